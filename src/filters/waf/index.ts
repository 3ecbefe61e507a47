import type { RequestContext } from '../../core/context.js';
import { channels } from '../../core/events.js';
import type { Filter, FilterDeps, FilterFactory, Handler } from '../../core/filter.js';
import { MAX_INSPECTED_BODY, RequestParts, inspectableBody, peekBody } from './inspect.js';
import { BUILTIN_RULES, type Part } from './rules.js';

export { BUILTIN_RULES } from './rules.js';
export { normalizeValue } from './inspect.js';

type Mode = 'off' | 'detect' | 'block';

interface CustomRuleConfig {
  id: number;
  part: 'uri' | 'path' | 'query' | 'headers' | 'cookies' | 'body';
  pattern: string;
  score?: number;
  operator?: 'regex' | 'contains' | 'equals' | 'startsWith';
  action?: 'score' | 'block' | 'allow';
}

interface GlobalWafConfig {
  mode?: Mode;
  threshold?: number;
  exclude?: number[];
  rules?: CustomRuleConfig[];
}

interface RouteWafConfig {
  mode?: Mode;
  exclude?: number[];
}

/** A compiled rule: `test` sees the part's text (decoded and lowercased for built-ins). */
interface Rule {
  id: number;
  parts: Part[];
  test: (text: string) => boolean;
  score: number;
  action: 'score' | 'block' | 'allow';
  /** Custom rules on uri/path/query see the raw text as received. */
  raw: boolean;
}

const DEFAULT_THRESHOLD = 5;

/**
 * Compiles a custom pattern. JavaScript has no inline flags, so a leading `(?i)` (or `(?s)`,
 * `(?m)`, combined like `(?is)`) as written for PCRE/RE2 is turned into the matching flags.
 */
export function compilePattern(pattern: string): RegExp {
  const inline = /^\(\?([ims]+)\)/.exec(pattern);
  const source = inline === null ? pattern : pattern.slice(inline[0].length);
  const flags = inline === null ? '' : [...new Set(inline[1])].join('');
  return new RegExp(source, flags);
}

function compileCustom(rule: CustomRuleConfig): Rule {
  const operator = rule.operator ?? 'regex';
  let test: (text: string) => boolean;
  if (operator === 'regex') {
    let re: RegExp;
    try {
      re = compilePattern(rule.pattern);
    } catch (err) {
      throw new Error(
        `waf.rules (id ${rule.id}): invalid pattern: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`,
      );
    }
    test = (text) => re.test(text);
  } else {
    const needle = rule.pattern;
    test =
      operator === 'contains'
        ? (text) => text.includes(needle)
        : operator === 'equals'
          ? (text) => text === needle
          : (text) => text.startsWith(needle);
  }
  return {
    id: rule.id,
    parts: [rule.part],
    test,
    score: rule.score ?? DEFAULT_THRESHOLD,
    action: rule.action ?? 'score',
    raw: rule.part === 'uri' || rule.part === 'path' || rule.part === 'query',
  };
}

export interface WafVerdict {
  score: number;
  ruleIds: number[];
  /** A rule with action block matched. */
  block: boolean;
  /** A rule with action allow matched: the request skips the WAF. */
  allow: boolean;
}

/** Runs the rules over a request's parts; stops early on allow/block. */
export function evaluate(rules: readonly Rule[], parts: RequestParts): WafVerdict {
  const verdict: WafVerdict = { score: 0, ruleIds: [], block: false, allow: false };
  for (const rule of rules) {
    let hit = false;
    for (const part of rule.parts) {
      const text = rule.raw ? parts.raw(part) : parts.get(part);
      if (text !== '' && rule.test(text)) {
        hit = true;
        break;
      }
    }
    if (!hit) continue;
    if (rule.action === 'allow') {
      verdict.allow = true;
      return verdict;
    }
    verdict.ruleIds.push(rule.id);
    verdict.score += rule.score;
    if (rule.action === 'block') {
      verdict.block = true;
      return verdict;
    }
  }
  return verdict;
}

/**
 * The web application firewall: the global `waf` section applies to every route (its `mode`
 * turns it on), and a route's `waf: { mode, exclude }` overrides the mode and leaves rules out.
 * Built-in rules (rules.ts) and custom `waf.rules` add to an anomaly score; at `threshold` a
 * request is logged and published (`detect`) or also answered 403 with its request id (`block`).
 */
export const wafFeature: FilterFactory = {
  key: 'waf',
  order: 200,
  defaultConfig(globals) {
    const global = globals.waf as GlobalWafConfig | undefined;
    if (global === undefined || (global.mode ?? 'off') === 'off') return undefined;
    return {};
  },
  create(raw: unknown, deps: FilterDeps, route: { name: string }): Filter {
    const global = (deps.globals.waf as GlobalWafConfig | undefined) ?? {};
    const local = (raw ?? {}) as RouteWafConfig;
    const mode: Mode = local.mode ?? global.mode ?? 'off';
    if (mode === 'off') return { name: 'waf', handle: (ctx, next) => next(ctx) };
    const threshold = global.threshold ?? DEFAULT_THRESHOLD;
    const excluded = new Set([...(global.exclude ?? []), ...(local.exclude ?? [])]);
    const custom = (global.rules ?? []).map(compileCustom);
    // allow rules first, so an exception is honoured before anything else is evaluated.
    const rules: Rule[] = [
      ...custom.filter((r) => r.action === 'allow'),
      ...BUILTIN_RULES.map((r) => ({
        id: r.id,
        parts: r.parts,
        test: (text: string) => r.pattern.test(text),
        score: r.score,
        action: 'score' as const,
        raw: false,
      })),
      ...custom.filter((r) => r.action !== 'allow'),
    ].filter((r) => !excluded.has(r.id));
    const inspectsBody = rules.some((r) => r.parts.includes('args') || r.parts.includes('body'));
    const block = mode === 'block';

    const decide = (ctx: RequestContext, parts: RequestParts, next: Handler) => {
      const verdict = evaluate(rules, parts);
      if (verdict.allow || (!verdict.block && verdict.score < threshold)) return next(ctx);
      const blocked = block;
      deps.log('warn', blocked ? 'waf blocked a request' : 'waf detected a request', {
        route: route.name,
        requestId: ctx.requestId,
        clientIp: ctx.clientIp,
        rules: verdict.ruleIds,
        score: verdict.score,
      });
      if (channels.wafMatch.hasSubscribers)
        channels.wafMatch.publish({ ctx, ruleIds: verdict.ruleIds, score: verdict.score, blocked });
      if (!blocked) return next(ctx);
      if (channels.requestDenied.hasSubscribers) channels.requestDenied.publish({ ctx, by: 'waf' });
      ctx.sendError('FORBIDDEN');
    };

    return {
      name: 'waf',
      handle(ctx, next) {
        const parts = new RequestParts(ctx);
        if (inspectsBody) {
          const length = Number(ctx.req.headers['content-length'] ?? 0);
          const type = ctx.req.headers['content-type'];
          if (length > 0 && length <= MAX_INSPECTED_BODY && inspectableBody(type)) {
            parts.bodyType = type!.toLowerCase();
            return peekBody(ctx, length).then((body) => {
              if (body === null) return;
              parts.body = body;
              return decide(ctx, parts, next);
            });
          }
        }
        return decide(ctx, parts, next);
      },
    };
  },
};
