// Validation shared by both backends, so a key or option that one backend accepts the other accepts too.
import { InvalidObjectKeyError, InvalidStorageArgumentError } from './errors.js';
import type { PresignGetOptions, PresignPutOptions } from './object-store.js';

export const MAX_KEY_LENGTH = 1024;
/** SigV4 presigned URLs cannot live longer than 7 days; the local backend keeps the same bound. */
export const MAX_PRESIGN_EXPIRES_SECONDS = 7 * 24 * 3600;
/** The largest object S3 accepts in one PUT, hence the largest presigned upload. */
export const MAX_PRESIGNED_PUT_BYTES = 5 * 1024 ** 3;
const MAX_CONTENT_TYPE_LENGTH = 255;
const MAX_FILENAME_LENGTH = 255;

// Letters, digits and `. _ - =` in `/`-separated segments. Narrower than S3 allows on purpose: these characters need
// no escaping in a URL path, sign identically under every SigV4 implementation (AWS, MinIO, Swift s3api) and are
// safe file names on the local backend. `~` is kept out: the local backend uses it in its own file names.
const KEY_CHARACTERS = /^[A-Za-z0-9._=\-/]+$/;

/** Throws InvalidObjectKeyError unless `key` is a safe object key. */
export function assertValidObjectKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw new InvalidObjectKeyError(key, 'must be a string');
  if (key.length === 0) throw new InvalidObjectKeyError(key, 'must not be empty');
  if (key.length > MAX_KEY_LENGTH) throw new InvalidObjectKeyError(key, `must be at most ${MAX_KEY_LENGTH} characters`);
  if (!KEY_CHARACTERS.test(key)) {
    throw new InvalidObjectKeyError(key, 'may only contain letters, digits, ".", "_", "-", "=" and "/"');
  }
  if (key.startsWith('/')) throw new InvalidObjectKeyError(key, 'must not start with "/"');
  if (key.endsWith('/')) throw new InvalidObjectKeyError(key, 'must not end with "/"');
  for (const segment of key.split('/')) {
    if (segment === '') throw new InvalidObjectKeyError(key, 'must not contain empty segments ("//")');
    if (segment === '.' || segment === '..') throw new InvalidObjectKeyError(key, 'must not contain "." or ".." segments');
  }
}

/** A list prefix follows the key rules except that it may be empty and may end with "/" or part of a segment. */
export function assertValidPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') throw new InvalidObjectKeyError(prefix, 'prefix must be a string');
  if (prefix === '') return;
  if (prefix.length > MAX_KEY_LENGTH) throw new InvalidObjectKeyError(prefix, `prefix must be at most ${MAX_KEY_LENGTH} characters`);
  if (!KEY_CHARACTERS.test(prefix)) {
    throw new InvalidObjectKeyError(prefix, 'prefix may only contain letters, digits, ".", "_", "-", "=" and "/"');
  }
  if (prefix.startsWith('/')) throw new InvalidObjectKeyError(prefix, 'prefix must not start with "/"');
  const segments = prefix.split('/');
  // The last segment is a partial name ("da" of "data/"), anything before it must be a whole valid segment.
  for (const [index, segment] of segments.entries()) {
    const isLast = index === segments.length - 1;
    if (segment === '' && !isLast) throw new InvalidObjectKeyError(prefix, 'prefix must not contain empty segments ("//")');
    if (segment === '..' || (segment === '.' && !isLast)) {
      throw new InvalidObjectKeyError(prefix, 'prefix must not contain "." or ".." segments');
    }
  }
}

// type "/" subtype, optional parameters (`; charset=utf-8`); RFC 7231 tokens, no whitespace inside tokens.
const TOKEN = "[A-Za-z0-9!#$%&'*+.^_`|~-]+";
const CONTENT_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:\\s*;\\s*${TOKEN}=(?:${TOKEN}|"[^"\\\\\\r\\n]*"))*$`);

export function assertValidContentType(contentType: unknown): asserts contentType is string {
  if (
    typeof contentType !== 'string' ||
    contentType.length > MAX_CONTENT_TYPE_LENGTH ||
    !CONTENT_TYPE.test(contentType)
  ) {
    throw new InvalidStorageArgumentError(
      `invalid content type ${JSON.stringify(String(contentType).slice(0, 80))}: expected type/subtype (e.g. image/png)`,
    );
  }
}

function assertExpiresIn(expiresInSeconds: unknown): asserts expiresInSeconds is number {
  if (
    typeof expiresInSeconds !== 'number' ||
    !Number.isInteger(expiresInSeconds) ||
    expiresInSeconds < 1 ||
    expiresInSeconds > MAX_PRESIGN_EXPIRES_SECONDS
  ) {
    throw new InvalidStorageArgumentError(
      `expiresInSeconds must be an integer from 1 to ${MAX_PRESIGN_EXPIRES_SECONDS}, got ${String(expiresInSeconds)}`,
    );
  }
}

export function assertValidPresignPut(opts: PresignPutOptions): void {
  assertValidContentType(opts.contentType);
  const { byteSize } = opts;
  if (!Number.isInteger(byteSize) || byteSize < 0 || byteSize > MAX_PRESIGNED_PUT_BYTES) {
    throw new InvalidStorageArgumentError(
      `byteSize must be an integer from 0 to ${MAX_PRESIGNED_PUT_BYTES}, got ${String(byteSize)}`,
    );
  }
  assertExpiresIn(opts.expiresInSeconds);
}

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

export function assertValidPresignGet(opts: PresignGetOptions): void {
  assertExpiresIn(opts.expiresInSeconds);
  if (opts.filename !== undefined) {
    // Printable characters only: the name ends up in a response header.
    if (
      typeof opts.filename !== 'string' ||
      opts.filename.length === 0 ||
      opts.filename.length > MAX_FILENAME_LENGTH ||
      hasControlCharacter(opts.filename)
    ) {
      throw new InvalidStorageArgumentError(
        `filename must be 1 to ${MAX_FILENAME_LENGTH} printable characters`,
      );
    }
  }
}

/**
 * `attachment` with an ASCII fallback name and the exact name as RFC 5987 `filename*`, so non-ASCII names survive and
 * quotes or backslashes cannot break out of the header value.
 */
export function contentDispositionFor(filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** The key as a URL path: each segment percent-encoded (a no-op for valid keys, kept as a guard). */
export function keyToUrlPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}
