// A stand-in OIDC issuer for the security tests: an RS256 key pair whose public half is served as a JWKS over HTTP
// (a tiny node:http server), like Keycloak, Auth0 or Entra ID serve theirs, and a signer for the tokens it would issue.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { Role } from '../../lib/auth.js';

export interface IssuedClaims {
  subject: string;
  tenant: string;
  roles: Role[];
}

export interface TokenOverrides {
  issuer?: string;
  audience?: string;
  /** Seconds since the epoch. */
  expiresAt?: number;
  notBefore?: number;
  kid?: string;
  /** Sign with another private key (one the JWKS does not hold). */
  key?: CryptoKey;
}

export interface TestIssuer {
  /** The `iss` of its tokens (a Keycloak-style realm URL). */
  issuer: string;
  jwksUrl: string;
  audience: string;
  kid: string;
  publicJwk: JWK;
  /** GET requests the JWKS endpoint has served. */
  jwksRequests(): number;
  /** Claims go where AUTH_TENANT_CLAIM=tenant and AUTH_ROLES_CLAIM=realm_access.roles expect them (Keycloak). */
  sign(claims: IssuedClaims, overrides?: TokenOverrides): Promise<string>;
  close(): Promise<void>;
}

export async function startTestIssuer(audience = 'lcd-api'): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `test-rs256-${Date.now().toString(36)}`;
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  let requests = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/realms/test/protocol/openid-connect/certs') {
      requests += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [publicJwk] }));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = `${base}/realms/test`;
  return {
    issuer,
    jwksUrl: `${issuer}/protocol/openid-connect/certs`,
    audience,
    kid,
    publicJwk,
    jwksRequests: () => requests,
    async sign(claims, overrides = {}) {
      const now = Math.floor(Date.now() / 1000);
      const jwt = new SignJWT({ tenant: claims.tenant, realm_access: { roles: claims.roles }, azp: 'lcd-web' })
        .setProtectedHeader({ alg: 'RS256', kid: overrides.kid ?? kid, typ: 'JWT' })
        .setSubject(claims.subject)
        .setIssuer(overrides.issuer ?? issuer)
        .setAudience(overrides.audience ?? audience)
        .setIssuedAt(now)
        .setExpirationTime(overrides.expiresAt ?? now + 3600);
      if (overrides.notBefore !== undefined) jwt.setNotBefore(overrides.notBefore);
      return jwt.sign(overrides.key ?? privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
