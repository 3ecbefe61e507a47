import diagnostics_channel from 'node:diagnostics_channel';

/**
 * Features and the core publish what happened on diagnostics channels; observability subscribes.
 * Publishers must guard with `channel.hasSubscribers` so an unobserved event costs nothing.
 */
export const channels = {
  /** A request finished (response ended or connection aborted). Message: RequestContext. */
  requestEnd: diagnostics_channel.channel('switchyard:request:end'),
  /** An unexpected error while serving a request. Message: { ctx, error }. */
  requestError: diagnostics_channel.channel('switchyard:request:error'),
  /** An upstream attempt finished. Message: { ctx, server, status, error, durationMs }. */
  upstreamAttempt: diagnostics_channel.channel('switchyard:upstream:attempt'),
};
