import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthError, createTokenVerifier, DEV_AUDIENCE, DEV_ISSUER, issueDevToken, type TokenVerifier } from './auth.js';

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
