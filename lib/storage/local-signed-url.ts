// Signed URLs of the local backend: `<base>/storage/<key>?op=put&exp=<unix>&ct=<type>&len=<bytes>&sig=<hmac>` and
// `<base>/storage/<key>?op=get&exp=<unix>[&fn=<filename>]&sig=<hmac>`. The HMAC-SHA256 (base64url) covers the
// operation, the key and every other parameter, so none of them can be changed without the secret.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { keyToUrlPath } from './object-key.js';

export const LOCAL_SIGNED_URL_PATH = '/storage/';
const SIGNATURE_VERSION = 'lcd-storage-v1';

export type LocalSignedRequest =
  | { op: 'put'; key: string; expiresAt: number; contentType: string; byteSize: number }
  | { op: 'get'; key: string; expiresAt: number; filename?: string };

function canonical(request: LocalSignedRequest): string {
  // JSON of a fixed-order array: unambiguous whatever characters the values contain.
  switch (request.op) {
    case 'put':
      return JSON.stringify([SIGNATURE_VERSION, 'put', request.key, request.expiresAt, request.contentType, request.byteSize]);
    case 'get':
      return JSON.stringify([SIGNATURE_VERSION, 'get', request.key, request.expiresAt, request.filename ?? null]);
  }
}

function sign(secret: Buffer, request: LocalSignedRequest): string {
  return createHmac('sha256', secret).update(canonical(request)).digest('base64url');
}

/** The full signed URL; `publicBaseUrl` has no trailing slash. */
export function buildLocalSignedUrl(publicBaseUrl: string, secret: Buffer, request: LocalSignedRequest): string {
  const query = new URLSearchParams({ op: request.op, exp: String(request.expiresAt) });
  if (request.op === 'put') {
    query.set('ct', request.contentType);
    query.set('len', String(request.byteSize));
  } else if (request.filename !== undefined) {
    query.set('fn', request.filename);
  }
  query.set('sig', sign(secret, request));
  return `${publicBaseUrl}${LOCAL_SIGNED_URL_PATH}${keyToUrlPath(request.key)}?${query.toString()}`;
}

export type VerifyResult =
  | { ok: true; request: LocalSignedRequest }
  | { ok: false; reason: 'SIGNATURE_INVALID' | 'URL_EXPIRED' };

const UNIX_SECONDS = /^\d{1,12}$/;
const BYTE_COUNT = /^\d{1,16}$/;

/**
 * Checks the signature first (timing-safe), then expiry: an unsigned URL learns nothing, not even whether it expired.
 * Malformed parameters count as a bad signature.
 */
export function verifyLocalSignedUrl(secret: Buffer, key: string, query: URLSearchParams, nowMs: number): VerifyResult {
  const op = query.get('op');
  const exp = query.get('exp');
  const sig = query.get('sig');
  if (sig === null || exp === null || !UNIX_SECONDS.test(exp)) return { ok: false, reason: 'SIGNATURE_INVALID' };
  let request: LocalSignedRequest;
  if (op === 'put') {
    const contentType = query.get('ct');
    const len = query.get('len');
    if (contentType === null || len === null || !BYTE_COUNT.test(len)) return { ok: false, reason: 'SIGNATURE_INVALID' };
    request = { op, key, expiresAt: Number(exp), contentType, byteSize: Number(len) };
  } else if (op === 'get') {
    const filename = query.get('fn');
    request = { op, key, expiresAt: Number(exp), ...(filename !== null && { filename }) };
  } else {
    return { ok: false, reason: 'SIGNATURE_INVALID' };
  }
  const expected = Buffer.from(sign(secret, request));
  const given = Buffer.from(sig);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'SIGNATURE_INVALID' };
  if (request.expiresAt * 1000 <= nowMs) return { ok: false, reason: 'URL_EXPIRED' };
  return { ok: true, request };
}
