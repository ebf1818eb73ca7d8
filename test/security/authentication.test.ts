// Authentication as a client meets it, with a real OIDC-style issuer: the platform is configured with AUTH_JWKS_URL
// and verifies RS256 tokens against the key set served over HTTP. Every bad token gets its own reason, with no data
// and nothing about the server's insides; identity reaches the subgraphs only as the verified token.
import { generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUBGRAPH_NAMES } from '../../subgraphs/index.js';
import { startExtraGateway, startTestPlatform, type TestPlatform } from '../support/platform.js';
import { codes, expectNoInternals, startSubgraphSpy } from './support.js';
import { startTestIssuer, type TestIssuer } from './test-issuer.js';

let issuer: TestIssuer;
let t: TestPlatform;

beforeAll(async () => {
  issuer = await startTestIssuer('lcd-api-test');
  t = await startTestPlatform(
    {
      AUTH_JWKS_URL: issuer.jwksUrl,
      AUTH_ISSUER: issuer.issuer,
      AUTH_AUDIENCE: issuer.audience,
      AUTH_TENANT_CLAIM: 'tenant',
      AUTH_ROLES_CLAIM: 'realm_access.roles',
    },
    { signToken: (claims) => issuer.sign(claims) },
  );
});
afterAll(async () => {
  await t?.close();
  await issuer?.close();
});

const ALL_FOUR = '{ datasets { totalCount } jobs { totalCount } trainingRuns { totalCount } auditEvents { totalCount } }';
const alice = { subject: 'alice', tenant: 'acme', roles: ['admin' as const] };

describe('tokens of an OIDC issuer (JWKS over HTTP)', () => {
  it("accepts the issuer's RS256 token at the gateway and in every subgraph it reaches", async () => {
    const res = await t.post({ query: ALL_FOUR }, { token: await issuer.sign(alice) });
    expect(res.status).toBe(200);
    expect(res.json?.errors).toBeUndefined();
    expect(res.json?.data).toMatchObject({ datasets: { totalCount: 0 }, jobs: { totalCount: 0 } });
    expect(issuer.jwksRequests()).toBeGreaterThan(0);
  });

  it('tolerates a small clock skew on exp', async () => {
    const token = await issuer.sign(alice, { expiresAt: Math.floor(Date.now() / 1000) - 10 });
    expect((await t.post({ query: '{ datasets { totalCount } }' }, { token })).status).toBe(200);
  });

  it('refuses every bad token with 401 UNAUTHENTICATED, its own reason, no data and no internals', async () => {
    const now = Math.floor(Date.now() / 1000);
    const good = await issuer.sign(alice);
    const [header, payload, signature] = good.split('.');
    const elevated = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), tenant: 'globex', realm_access: { roles: ['admin'] } }),
    ).toString('base64url');
    const rogue = (await generateKeyPair('RS256')).privateKey;
    const none = new UnsecuredJWT({ tenant: 'acme', realm_access: { roles: ['admin'] } })
      .setSubject('mallory')
      .setIssuer(issuer.issuer)
      .setAudience(issuer.audience)
      .setExpirationTime('1h')
      .encode();
    // The classic confusion: HS256 "signed" with the issuer's public key, hoping the server verifies it as a secret.
    const confused = await new SignJWT({ tenant: 'acme', realm_access: { roles: ['admin'] } })
      .setProtectedHeader({ alg: 'HS256', kid: issuer.kid })
      .setSubject('mallory')
      .setIssuer(issuer.issuer)
      .setAudience(issuer.audience)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(JSON.stringify(issuer.publicJwk)));

    const cases: [string, string | null, string][] = [
      ['missing', null, 'TOKEN_MISSING'],
      ['not a bearer token', 'Basic YWRtaW46YWRtaW4=', 'TOKEN_MALFORMED'],
      ['not a JWT', 'Bearer not-a-jwt', 'TOKEN_MALFORMED'],
      ['three garbage parts', 'Bearer aaaa.bbbb.cccc', 'TOKEN_MALFORMED'],
      ['expired', `Bearer ${await issuer.sign(alice, { expiresAt: now - 3600 })}`, 'TOKEN_EXPIRED'],
      ['not yet valid', `Bearer ${await issuer.sign(alice, { notBefore: now + 3600 })}`, 'TOKEN_NOT_YET_VALID'],
      ['for another audience', `Bearer ${await issuer.sign(alice, { audience: 'another-api' })}`, 'TOKEN_CLAIM_INVALID'],
      ['from another issuer', `Bearer ${await issuer.sign(alice, { issuer: 'https://evil.example/realms/test' })}`, 'TOKEN_CLAIM_INVALID'],
      ['tampered payload', `Bearer ${header}.${elevated}.${signature}`, 'TOKEN_SIGNATURE_INVALID'],
      ['signed by a key the issuer does not publish, under its kid', `Bearer ${await issuer.sign(alice, { key: rogue })}`, 'TOKEN_SIGNATURE_INVALID'],
      ['with an unknown kid', `Bearer ${await issuer.sign(alice, { key: rogue, kid: 'made-up' })}`, 'TOKEN_SIGNATURE_INVALID'],
      ['alg none', `Bearer ${none}`, 'TOKEN_ALGORITHM_REFUSED'],
      ['HS256 keyed with the public key', `Bearer ${confused}`, 'TOKEN_ALGORITHM_REFUSED'],
      ['longer than any real token', `Bearer ${'a'.repeat(9000)}.b.c`, 'TOKEN_MALFORMED'],
    ];
    for (const [name, authorization, reason] of cases) {
      const res = await t.post({ query: ALL_FOUR }, { token: null, headers: authorization ? { authorization } : {} });
      expect(res.status, name).toBe(401);
      expect(codes(res), name).toEqual(['UNAUTHENTICATED']);
      expect(res.json?.errors?.[0]?.extensions?.reason, name).toBe(reason);
      expect(res.json?.data, name).toBeUndefined();
      expect(res.headers.get('www-authenticate'), name).toMatch(/^Bearer/);
      expectNoInternals(res);
    }
    const metrics = await (await fetch(t.url.replace(/\/graphql$/, '/metrics'))).text();
    expect(metrics).toMatch(/lcd_auth_failures_total\{reason="TOKEN_ALGORITHM_REFUSED",service="gateway"\} 2/);
    // The gateway and the subgraphs are still up and still serve a good token.
    expect((await t.post({ query: ALL_FOUR }, { token: good })).status).toBe(200);
  });

  it('answers 503 UNAVAILABLE, not 401, while the issuer cannot be reached', async () => {
    const gateway = await startExtraGateway(t, { AUTH_JWKS_URL: 'http://127.0.0.1:1/certs' }, { ownRuntime: true });
    try {
      const res = await t.post({ query: ALL_FOUR }, { token: await issuer.sign(alice), url: gateway.url });
      expect(res.status).toBe(503);
      expect(codes(res)).toEqual(['UNAVAILABLE']);
      expect(res.json?.errors?.[0]?.extensions).toMatchObject({ reason: 'ISSUER_UNAVAILABLE', retryable: true });
      expect(res.headers.get('retry-after')).toBe('5');
      expectNoInternals(res);
    } finally {
      await gateway.close();
    }
  });

  it('refuses tokens signed with the embedded development key once an issuer is configured', async () => {
    const { issueDevToken } = await import('../../lib/auth.js');
    const dev = await issueDevToken(t.stateDir, { subject: 'dev-admin', tenant: 'acme', roles: ['admin'] }, { issuer: issuer.issuer, audience: issuer.audience });
    const res = await t.post({ query: ALL_FOUR }, { token: dev });
    expect(res.status).toBe(401);
    expect(res.json?.errors?.[0]?.extensions?.reason).toBe('TOKEN_SIGNATURE_INVALID');
  });
});

describe('identity between the gateway and the subgraphs', () => {
  it('forwards only the verified token and the trace context: client identity headers never travel and never count', async () => {
    const spy = await startSubgraphSpy(t.platform.subgraphs.datasets.url);
    const gateway = await startExtraGateway(t, {}, { subgraphUrls: { datasets: spy.url } });
    try {
      const alpha = await issuer.sign({ subject: 'alpha-admin', tenant: 'alpha', roles: ['admin'] });
      const beta = await issuer.sign({ subject: 'beta-viewer', tenant: 'beta', roles: ['viewer'] });
      const spoofing = {
        'x-tenant': 'alpha',
        'x-tenant-id': 'alpha',
        'x-user-id': 'alpha-admin',
        'x-roles': 'admin',
        'x-forwarded-user': 'alpha-admin',
        'x-auth-request-user': 'alpha-admin',
        cookie: 'session=alpha-admin',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      };
      const created = await t.post(
        { query: 'mutation { createDataset(input: {name: "alpha-only"}) { id } }' },
        { token: alpha, url: gateway.url },
      );
      const id = (created.json?.data as { createDataset: { id: string } }).createDataset.id;

      // beta's viewer, claiming to be alpha's admin in every header a proxy might have set
      const read = await t.post({ query: `{ dataset(id: "${id}") { id } }` }, { token: beta, url: gateway.url, headers: spoofing });
      expect(codes(read)).toEqual(['NOT_FOUND']);
      const list = await t.post({ query: '{ datasets { totalCount } }' }, { token: beta, url: gateway.url, headers: spoofing });
      expect(list.json?.data).toEqual({ datasets: { totalCount: 0 } });
      const write = await t.post({ query: 'mutation { createDataset(input: {name: "spoofed"}) { id } }' }, { token: beta, url: gateway.url, headers: spoofing });
      expect(codes(write)).toEqual(['FORBIDDEN']);

      const asBeta = spy.requests.filter((r) => r.authorization === `Bearer ${beta}`);
      expect(asBeta).toHaveLength(3); // the subgraph itself refused the write: it verifies the token and the role
      for (const seen of asBeta) expect(seen.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
      for (const request of spy.requests) {
        for (const name of Object.keys(spoofing).filter((n) => n !== 'traceparent')) expect(request[name], name).toBeUndefined();
      }
    } finally {
      await gateway.close();
      await spy.close();
    }
  });

  it('answers a subgraph called directly without a valid identity with 401, but health and metrics with 200', async () => {
    const forged = new UnsecuredJWT({ tenant: 'acme', realm_access: { roles: ['admin'] } }).setSubject('m').setIssuer(issuer.issuer).setAudience(issuer.audience).setExpirationTime('1h').encode();
    for (const name of SUBGRAPH_NAMES) {
      const url = t.platform.subgraphs[name].url;
      const attempts: [string, Record<string, string>, string][] = [
        ['no token', {}, '{ __typename }'],
        ['identity headers', { 'x-tenant': 'acme', 'x-user-id': 'admin', 'x-roles': 'admin' }, '{ __typename }'],
        ['alg none', { authorization: `Bearer ${forged}` }, '{ __typename }'],
        ['the schema', {}, '{ _service { sdl } }'],
        ['an entity lookup', {}, '{ _entities(representations: [{__typename: "Job", id: "x"}]) { __typename } }'],
      ];
      for (const [what, headers, query] of attempts) {
        const res = await t.post({ query }, { token: null, headers, url });
        expect(res.status, `${name}: ${what}`).toBe(401);
        expect(codes(res), `${name}: ${what}`).toEqual(['UNAUTHENTICATED']);
        expectNoInternals(res);
      }
      const base = url.replace(/\/graphql$/, '');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/metrics`)).status).toBe(200);
    }
  });
});
