// Identity: verifies bearer JWTs from any OIDC issuer (JWKS) or from the embedded development key, and issues
// development tokens. The gateway and every subgraph verify with the same code, so no service trusts a header alone.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';

export const ROLES = ['viewer', 'analyst', 'ml-engineer', 'approver', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface Identity {
  subject: string;
  tenant: string;
  roles: Role[];
  /** The verified token, forwarded to subgraphs so each verifies it again. */
  token: string;
  expiresAt: number;
}

export type AuthFailure =
  | 'TOKEN_MISSING'
  | 'TOKEN_MALFORMED'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_NOT_YET_VALID'
  | 'TOKEN_SIGNATURE_INVALID'
  | 'TOKEN_ALGORITHM_REFUSED'
  | 'TOKEN_CLAIM_INVALID'
  /** The issuer's JWKS could not be fetched: not the caller's fault, worth a retry. */
  | 'ISSUER_UNAVAILABLE';

export class AuthError extends Error {
  constructor(
    readonly reason: AuthFailure,
    message: string,
  ) {
    super(message);
    this.name = 'AuthError';
  }
}

export interface AuthConfig {
  jwksUrl?: string;
  issuer: string;
  audience: string;
  algorithms: string[];
  clockToleranceSeconds: number;
  /** Where the embedded development key lives when no JWKS URL is configured. */
  stateDir: string;
  /** Claim name, or a dotted path into nested claims (`realm_access.roles`) when no claim has the whole name. */
  tenantClaim: string;
  rolesClaim: string;
}

/** Longer than any real access token; a bigger header is refused before anything parses it. */
export const MAX_TOKEN_LENGTH = 8192;

export const DEV_ISSUER = 'urn:lcd:dev';
export const DEV_AUDIENCE = 'lcd-api';
const DEV_ALG = 'ES256';

interface DevKey {
  privateJwk: JWK;
  publicJwk: JWK;
}

async function loadOrCreateDevKey(stateDir: string): Promise<DevKey> {
  const path = join(stateDir, 'auth', 'dev-signing-key.json');
  try {
    return JSON.parse(await readFile(path, 'utf8')) as DevKey;
  } catch {
    const { privateKey, publicKey } = await generateKeyPair(DEV_ALG, { extractable: true });
    const kid = `dev-${Date.now().toString(36)}`;
    const key: DevKey = {
      privateJwk: { ...(await exportJWK(privateKey)), kid, alg: DEV_ALG, use: 'sig' },
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: DEV_ALG, use: 'sig' },
    };
    await mkdir(dirname(path), { recursive: true });
    // A second process racing here writes an equally valid key; the last writer wins and both re-read it below.
    await writeFile(path, JSON.stringify(key), { mode: 0o600, flag: 'wx' }).catch(() => undefined);
    return JSON.parse(await readFile(path, 'utf8')) as DevKey;
  }
}

export interface TokenVerifier {
  verify(authorization: string | undefined | null): Promise<Identity>;
}

/** How many verified tokens a verifier remembers, and for how long at most. */
const VERIFIED_TOKENS_KEPT = 10_000;
const VERIFIED_TOKEN_TTL_MS = 60_000;

export async function createTokenVerifier(config: AuthConfig): Promise<TokenVerifier> {
  let keySet: JWTVerifyGetKey;
  if (config.jwksUrl) {
    // Unknown key ids refetch the set at most every 30 s, so a flood of made-up kids cannot hammer the issuer.
    keySet = createRemoteJWKSet(new URL(config.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000, timeoutDuration: 5000 });
  } else {
    const dev = await loadOrCreateDevKey(config.stateDir);
    keySet = createLocalJWKSet({ keys: [dev.publicJwk] });
  }
  const algorithms = config.algorithms.filter((a) => a !== 'none' && !a.startsWith('HS'));
  // Tokens verified in the last minute, by their text: a client sends the same token with every request, and in the
  // embedded mode the gateway and the subgraph it calls share this verifier. An entry lasts until the token expires,
  // and a minute at most.
  const verified = new Map<string, { identity: Identity; until: number }>();

  return {
    async verify(authorization) {
      if (!authorization) throw new AuthError('TOKEN_MISSING', 'A bearer token is required (Authorization: Bearer <jwt>)');
      if (authorization.length > MAX_TOKEN_LENGTH + 16) throw new AuthError('TOKEN_MALFORMED', `The token is longer than ${MAX_TOKEN_LENGTH} characters`);
      const match = /^Bearer\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/.exec(authorization.trim());
      if (!match) throw new AuthError('TOKEN_MALFORMED', 'The Authorization header must be "Bearer <jwt>"');
      const token = match[1]!;
      const now = Date.now();
      const known = verified.get(token);
      if (known && now < known.until) return known.identity;
      if (known) verified.delete(token);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keySet, {
          issuer: config.issuer,
          audience: config.audience,
          algorithms,
          clockTolerance: config.clockToleranceSeconds,
          requiredClaims: ['sub', 'exp'],
        }));
      } catch (error) {
        throw mapJoseError(error, !!config.jwksUrl);
      }
      const identity = identityFromClaims(payload, token, config);
      if (verified.size >= VERIFIED_TOKENS_KEPT) verified.delete(verified.keys().next().value!);
      verified.set(token, { identity, until: Math.min(identity.expiresAt * 1000, now + VERIFIED_TOKEN_TTL_MS) });
      return identity;
    },
  };
}

function mapJoseError(error: unknown, remoteKeys: boolean): AuthError {
  if (remoteKeys) {
    // Fetching the issuer's key set failed: connection refused, DNS, TLS (not JOSE errors), a timeout, a non-200
    // answer or a body that is no key set (JOSE's generic error).
    const fetchFailed =
      !(error instanceof joseErrors.JOSEError) ||
      error instanceof joseErrors.JWKSTimeout ||
      error instanceof joseErrors.JWKSInvalid ||
      error.code === 'ERR_JOSE_GENERIC';
    if (fetchFailed) return new AuthError('ISSUER_UNAVAILABLE', 'The token issuer cannot be reached');
  }
  if (error instanceof joseErrors.JWTExpired) return new AuthError('TOKEN_EXPIRED', 'The token has expired');
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') return new AuthError('TOKEN_NOT_YET_VALID', 'The token is not valid yet (nbf)');
    return new AuthError('TOKEN_CLAIM_INVALID', `The token's "${error.claim}" claim is not accepted`);
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed || error instanceof joseErrors.JOSENotSupported) {
    return new AuthError('TOKEN_ALGORITHM_REFUSED', 'The token is signed with an algorithm that is not allowed');
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed || error instanceof joseErrors.JWKSNoMatchingKey) {
    return new AuthError('TOKEN_SIGNATURE_INVALID', 'The token signature is invalid');
  }
  return new AuthError('TOKEN_MALFORMED', 'The token could not be parsed');
}

/** A claim by name, else by dotted path (Keycloak's `realm_access.roles`); URL-named claims (Auth0) match whole. */
function claim(payload: JWTPayload, name: string): unknown {
  if (name in payload) return payload[name];
  let value: unknown = payload;
  for (const part of name.split('.')) {
    if (!value || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function identityFromClaims(payload: JWTPayload, token: string, config: AuthConfig): Identity {
  const tenant = claim(payload, config.tenantClaim);
  if (typeof tenant !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,62}$/i.test(tenant)) {
    throw new AuthError('TOKEN_CLAIM_INVALID', `The token has no valid "${config.tenantClaim}" claim`);
  }
  const rawRoles = claim(payload, config.rolesClaim);
  // Some issuers send one role as a string, or a space-separated list (like `scope`).
  const list = Array.isArray(rawRoles) ? rawRoles : typeof rawRoles === 'string' ? rawRoles.split(/[\s,]+/) : [];
  const roles = [...new Set(list.filter((r): r is Role => ROLES.includes(r as Role)))];
  if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 500) {
    throw new AuthError('TOKEN_CLAIM_INVALID', 'The token has no valid "sub" claim');
  }
  return { subject: payload.sub, tenant, roles, token, expiresAt: payload.exp! };
}

/** Signs a token with the embedded development key (the only key this platform ever signs user tokens with). */
export async function issueDevToken(
  stateDir: string,
  claims: { subject: string; tenant: string; roles: Role[]; ttlSeconds?: number },
  overrides: { issuer?: string; audience?: string; notBefore?: number; expiresAt?: number } = {},
): Promise<string> {
  const dev = await loadOrCreateDevKey(stateDir);
  const key = await importJWK(dev.privateJwk, DEV_ALG);
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ tenant: claims.tenant, roles: claims.roles })
    .setProtectedHeader({ alg: DEV_ALG, kid: dev.privateJwk.kid, typ: 'JWT' })
    .setSubject(claims.subject)
    .setIssuer(overrides.issuer ?? DEV_ISSUER)
    .setAudience(overrides.audience ?? DEV_AUDIENCE)
    .setIssuedAt(now)
    .setExpirationTime(overrides.expiresAt ?? now + (claims.ttlSeconds ?? 12 * 3600));
  if (overrides.notBefore) jwt.setNotBefore(overrides.notBefore);
  return jwt.sign(key);
}

/** The public JWKS of the development key, so external tools can verify dev tokens too. */
export async function devJwks(stateDir: string): Promise<{ keys: JWK[] }> {
  return { keys: [(await loadOrCreateDevKey(stateDir)).publicJwk] };
}
