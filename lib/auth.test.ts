import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { importJWK, SignJWT, UnsecuredJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthError, createTokenVerifier, DEV_AUDIENCE, DEV_ISSUER, issueDevToken, MAX_TOKEN_LENGTH, type AuthConfig, type TokenVerifier } from './auth.js';

let stateDir: string;
let verifier: TokenVerifier;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'lcd-auth-'));
  verifier = await createTokenVerifier({
    issuer: DEV_ISSUER,
    audience: DEV_AUDIENCE,
    algorithms: ['ES256', 'RS256'],
    clockToleranceSeconds: 30,
    stateDir,
    tenantClaim: 'tenant',
    rolesClaim: 'roles',
  });
});
afterAll(() => rm(stateDir, { recursive: true, force: true }));

async function reason(authorization: string | undefined): Promise<string> {
  try {
    await verifier.verify(authorization);
    return 'ACCEPTED';
  } catch (error) {
    return error instanceof AuthError ? error.reason : `UNEXPECTED ${String(error)}`;
  }
}

describe('token verification', () => {
  it('accepts a token of the configured issuer and returns its identity', async () => {
    const token = await issueDevToken(stateDir, { subject: 'alice', tenant: 'acme', roles: ['analyst', 'not-a-role' as never] });
    const identity = await verifier.verify(`Bearer ${token}`);
    expect(identity).toMatchObject({ subject: 'alice', tenant: 'acme', roles: ['analyst'], token });
  });

  it('refuses missing, malformed, expired, not-yet-valid, wrong-audience and wrong-issuer tokens, each with its reason', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { subject: 'alice', tenant: 'acme', roles: ['viewer' as const] };
    expect(await reason(undefined)).toBe('TOKEN_MISSING');
    expect(await reason('Basic dXNlcjpwYXNz')).toBe('TOKEN_MALFORMED');
    expect(await reason('Bearer a.b.c')).toBe('TOKEN_MALFORMED');
    expect(await reason(`Bearer ${await issueDevToken(stateDir, claims, { expiresAt: now - 120 })}`)).toBe('TOKEN_EXPIRED');
    expect(await reason(`Bearer ${await issueDevToken(stateDir, claims, { notBefore: now + 600 })}`)).toBe('TOKEN_NOT_YET_VALID');
    expect(await reason(`Bearer ${await issueDevToken(stateDir, claims, { audience: 'someone-else' })}`)).toBe('TOKEN_CLAIM_INVALID');
    expect(await reason(`Bearer ${await issueDevToken(stateDir, claims, { issuer: 'https://evil.example' })}`)).toBe('TOKEN_CLAIM_INVALID');
  });

  it('tolerates a small clock skew', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await issueDevToken(stateDir, { subject: 'a', tenant: 'acme', roles: [] }, { expiresAt: now - 10 });
    expect(await reason(`Bearer ${token}`)).toBe('ACCEPTED');
  });

  it('refuses a tampered payload, alg none and an HMAC token keyed with the public key', async () => {
    const token = await issueDevToken(stateDir, { subject: 'alice', tenant: 'acme', roles: ['viewer'] });
    const [header, , signature] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ sub: 'alice', tenant: 'acme', roles: ['admin'], iss: DEV_ISSUER, aud: DEV_AUDIENCE, exp: 9_999_999_999 })).toString('base64url');
    expect(await reason(`Bearer ${header}.${forged}.${signature}`)).toBe('TOKEN_SIGNATURE_INVALID');

    const none = new UnsecuredJWT({ tenant: 'acme', roles: ['admin'] }).setSubject('mallory').setIssuer(DEV_ISSUER).setAudience(DEV_AUDIENCE).setExpirationTime('1h').encode();
    expect(await reason(`Bearer ${none}`)).toBe('TOKEN_ALGORITHM_REFUSED');

    const key = JSON.parse(await readFile(join(stateDir, 'auth', 'dev-signing-key.json'), 'utf8')) as { publicJwk: Record<string, string> };
    const hmac = await new SignJWT({ tenant: 'acme', roles: ['admin'] })
      .setProtectedHeader({ alg: 'HS256', kid: key.publicJwk.kid })
      .setSubject('mallory')
      .setIssuer(DEV_ISSUER)
      .setAudience(DEV_AUDIENCE)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(JSON.stringify(key.publicJwk)));
    expect(await reason(`Bearer ${hmac}`)).toBe('TOKEN_ALGORITHM_REFUSED');
  });

  it('refuses a token without a valid tenant claim', async () => {
    const token = await issueDevToken(stateDir, { subject: 'a', tenant: 'bad tenant!', roles: [] });
    expect(await reason(`Bearer ${token}`)).toBe('TOKEN_CLAIM_INVALID');
  });
});

/** Signs any claims with the development key, as an issuer with other claim names would. */
async function signWithDevKey(claims: Record<string, unknown>): Promise<string> {
  await issueDevToken(stateDir, { subject: 'x', tenant: 'x', roles: [] }); // makes sure the key exists
  const { privateJwk } = JSON.parse(await readFile(join(stateDir, 'auth', 'dev-signing-key.json'), 'utf8')) as { privateJwk: JWK };
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: privateJwk.kid })
    .setIssuer(DEV_ISSUER)
    .setAudience(DEV_AUDIENCE)
    .setExpirationTime('1h')
    .sign(await importJWK(privateJwk, 'ES256'));
}

const baseConfig = (): AuthConfig => ({
  issuer: DEV_ISSUER,
  audience: DEV_AUDIENCE,
  algorithms: ['ES256', 'RS256'],
  clockToleranceSeconds: 30,
  stateDir,
  tenantClaim: 'tenant',
  rolesClaim: 'roles',
});

describe('claims of other issuers', () => {
  it('reads nested (Keycloak) and URL-named (Auth0) claims, and a role list given as a string', async () => {
    const keycloak = await createTokenVerifier({ ...baseConfig(), tenantClaim: 'org.tenant', rolesClaim: 'realm_access.roles' });
    const token = await signWithDevKey({ sub: 'kc-user', org: { tenant: 'acme' }, realm_access: { roles: ['analyst', 'offline_access', 'analyst'] } });
    expect(await keycloak.verify(`Bearer ${token}`)).toMatchObject({ subject: 'kc-user', tenant: 'acme', roles: ['analyst'] });

    const auth0 = await createTokenVerifier({ ...baseConfig(), tenantClaim: 'https://lcd.example/tenant', rolesClaim: 'https://lcd.example/roles' });
    const a0 = await signWithDevKey({ sub: 'auth0|1', 'https://lcd.example/tenant': 'acme', 'https://lcd.example/roles': 'viewer approver' });
    expect(await auth0.verify(`Bearer ${a0}`)).toMatchObject({ tenant: 'acme', roles: ['viewer', 'approver'] });
  });

  it('refuses a token without a subject, and a header longer than any real token', async () => {
    expect(await reason(`Bearer ${await signWithDevKey({ tenant: 'acme', roles: [] })}`)).toBe('TOKEN_CLAIM_INVALID');
    expect(await reason(`Bearer ${'a'.repeat(MAX_TOKEN_LENGTH)}.${'b'.repeat(100)}.c`)).toBe('TOKEN_MALFORMED');
  });
});

describe('remote key sets', () => {
  let server: Server;
  let status = 500;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? '{"not":"a key set"}' : '{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('says the issuer is unavailable when its JWKS cannot be fetched or is not a key set', async () => {
    const token = await issueDevToken(stateDir, { subject: 'a', tenant: 'acme', roles: [] });
    const { port } = server.address() as AddressInfo;
    const failing = await createTokenVerifier({ ...baseConfig(), jwksUrl: `http://127.0.0.1:${port}/jwks.json` });
    const refused = await createTokenVerifier({ ...baseConfig(), jwksUrl: 'http://127.0.0.1:1/jwks.json' });
    const outcome = async (v: TokenVerifier) => v.verify(`Bearer ${token}`).then(() => 'ACCEPTED', (e: AuthError) => e.reason);
    expect(await outcome(failing)).toBe('ISSUER_UNAVAILABLE');
    expect(await outcome(refused)).toBe('ISSUER_UNAVAILABLE');
    status = 200;
    const invalid = await createTokenVerifier({ ...baseConfig(), jwksUrl: `http://127.0.0.1:${port}/jwks.json` });
    expect(await outcome(invalid)).toBe('ISSUER_UNAVAILABLE');
  });
});

describe('verified tokens remembered', () => {
  it('answers a token verified before with the same identity, and refuses it once it has expired', async () => {
    const strict = await createTokenVerifier({ ...baseConfig(), clockToleranceSeconds: 0 });
    const soon = Math.floor(Date.now() / 1000) + 2;
    const token = await issueDevToken(stateDir, { subject: 'alice', tenant: 'acme', roles: ['analyst'] }, { expiresAt: soon });
    const first = await strict.verify(`Bearer ${token}`);
    expect(await strict.verify(`Bearer ${token}`)).toEqual(first);
    expect(first).toMatchObject({ subject: 'alice', tenant: 'acme', roles: ['analyst'], expiresAt: soon });
    await new Promise((r) => setTimeout(r, soon * 1000 + 50 - Date.now()));
    await expect(strict.verify(`Bearer ${token}`)).rejects.toMatchObject({ reason: 'TOKEN_EXPIRED' });
  });
});
