// What the security tests share: the check that a refusal says nothing about the server's insides, and a spy that
// records what the gateway sends to a subgraph.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import type { RawResponse } from '../support/platform.js';

/** No stack frame, source path, internal address or driver message in a response body. */
export function expectNoInternals(response: RawResponse | string): void {
  const text = typeof response === 'string' ? response : response.text;
  expect(text).not.toMatch(/stacktrace|\bat .+\.(?:js|ts|mjs):\d+|node_modules|\/work\/|file:\/\/|ECONNREFUSED|\/graphql\b.*127\.0\.0\.1|Context creation failed/);
}

/** The error codes of a raw response, in order. */
export function codes(response: RawResponse): string[] {
  return (response.json?.errors ?? []).map((e) => String(e.extensions?.code));
}

export interface SubgraphSpy {
  url: string;
  /** Headers of every request the spy passed on, oldest first. */
  requests: IncomingHttpHeaders[];
  close(): Promise<void>;
}

/** A pass-through proxy in front of a subgraph that records the headers the gateway sends it. */
export async function startSubgraphSpy(target: string): Promise<SubgraphSpy> {
  const requests: IncomingHttpHeaders[] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ ...req.headers });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(([name]) => !['host', 'content-length', 'connection', 'keep-alive'].includes(name)),
      ) as Record<string, string>;
      fetch(target, { method: req.method, headers, body: req.method === 'GET' ? undefined : Buffer.concat(chunks) })
        .then(async (upstream) => {
          res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
          res.end(Buffer.from(await upstream.arrayBuffer()));
        })
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
