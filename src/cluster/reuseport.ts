import net from 'node:net';

type ListenArgs = Parameters<net.Server['listen']>;

/**
 * Whether this runtime honours `reusePort` (SO_REUSEPORT; Node.js 22.12+/23.1+ on Linux and a
 * few BSDs). Older runtimes ignore the option silently, so this is a real test: two sockets on
 * one port, which only succeeds when the option reached the kernel.
 */
export async function detectReusePort(): Promise<boolean> {
  const first = net.createServer();
  const second = net.createServer();
  try {
    const port = await listenOn(first, 0);
    await listenOn(second, port);
    return true;
  } catch {
    return false;
  } finally {
    first.close();
    second.close();
  }
}

function listenOn(server: net.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(
      { host: '127.0.0.1', port, exclusive: true, reusePort: true } as net.ListenOptions,
      () => {
        server.off('error', reject);
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : 0);
      },
    );
  });
}

/**
 * Makes a worker's listener bind its own SO_REUSEPORT socket (`exclusive` keeps the cluster
 * module out of it), so the kernel spreads connections over the workers with no hop through the
 * primary. A port-0 listener stays on the cluster path: every worker must share one port, and
 * only the primary can hand out the same "random" port to all of them.
 */
export function useReusePort(server: net.Server): void {
  const listen = server.listen.bind(server) as (...args: ListenArgs) => net.Server;
  server.listen = ((...args: ListenArgs) => {
    const [options] = args;
    if (typeof options === 'object' && options !== null && !Array.isArray(options)) {
      const opts = options as net.ListenOptions;
      if (typeof opts.port === 'number' && opts.port !== 0) {
        args[0] = { ...opts, exclusive: true, reusePort: true } as net.ListenOptions;
      }
    }
    return listen(...args);
  }) as net.Server['listen'];
}
