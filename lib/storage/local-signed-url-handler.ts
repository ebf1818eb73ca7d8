// Serves the local backend's signed URLs (`<base>/storage/<key>?op=...&sig=...`), so clients upload and download with
// the same presigned-URL flow as on S3. Mount it in any node:http server:
//
//   const storageHandler = createLocalSignedUrlHandler(store);
//   http.createServer(async (req, res) => { if (await storageHandler(req, res)) return; ...the rest of the app... });
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { InvalidObjectKeyError, ObjectNotFoundError, ObjectSizeMismatchError } from './errors.js';
import type { LocalObjectStore } from './local-object-store.js';
import { LOCAL_SIGNED_URL_PATH } from './local-signed-url.js';
import { assertValidObjectKey, contentDispositionFor } from './object-key.js';

export type NodeRequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export type SignedUrlErrorCode =
  | 'SIGNATURE_INVALID'
  | 'URL_EXPIRED'
  | 'SIZE_MISMATCH'
  | 'CONTENT_TYPE_MISMATCH'
  | 'LENGTH_REQUIRED'
  | 'INVALID_OBJECT_KEY'
  | 'OBJECT_NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'INTERNAL_ERROR';

export interface LocalSignedUrlHandlerOptions {
  /**
   * Path the handler owns, with leading and trailing slash. Default: the path of the store's publicBaseUrl followed by
   * `/storage/` (what the signed URLs name); set it when a reverse proxy rewrites paths.
   */
  pathPrefix?: string;
  /** Clock for expiry checks, in milliseconds; tests only. */
  now?: () => number;
}

function sendError(res: ServerResponse, status: number, code: SignedUrlErrorCode, message: string, close = false): void {
  const body = JSON.stringify({ error: { code, message } });
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  // An upload refused before its body was read: do not keep reading it just to reuse the connection.
  if (close) res.setHeader('Connection', 'close');
  res.end(body);
}

/** A Node request handler for local signed URLs; resolves false (touching nothing) for paths outside its prefix. */
export function createLocalSignedUrlHandler(
  store: LocalObjectStore,
  options: LocalSignedUrlHandlerOptions = {},
): NodeRequestHandler {
  const basePath = new URL(store.publicBaseUrl).pathname.replace(/\/+$/, '');
  const prefix = options.pathPrefix ?? `${basePath}${LOCAL_SIGNED_URL_PATH}`;
  if (!prefix.startsWith('/') || !prefix.endsWith('/')) throw new Error('pathPrefix must start and end with "/"');
  const now = options.now ?? Date.now;

  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith(prefix)) return false;
    try {
      await handle(req, res, url);
    } catch (error) {
      if (!res.headersSent) sendError(res, 500, 'INTERNAL_ERROR', 'storage request failed', true);
      else res.destroy(error instanceof Error ? error : undefined);
    }
    return true;
  };

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const isUpload = req.method === 'PUT';
    if (req.method !== 'GET' && !isUpload) {
      res.setHeader('Allow', 'GET, PUT');
      sendError(res, 405, 'METHOD_NOT_ALLOWED', `method ${req.method ?? ''} is not allowed on signed storage URLs`, true);
      return;
    }
    let key: string;
    try {
      key = decodeURIComponent(url.pathname.slice(prefix.length));
      assertValidObjectKey(key);
    } catch (error) {
      const message = error instanceof InvalidObjectKeyError ? error.message : 'bad percent-encoding in the key';
      sendError(res, 400, 'INVALID_OBJECT_KEY', message, isUpload);
      return;
    }

    const verdict = store.verifySignedUrl(key, url.searchParams, now());
    if (!verdict.ok) {
      const message = verdict.reason === 'URL_EXPIRED' ? 'the signed URL has expired' : 'the URL signature is invalid';
      sendError(res, 403, verdict.reason, message, isUpload);
      return;
    }
    const signed = verdict.request;
    if ((signed.op === 'put') !== isUpload) {
      res.setHeader('Allow', signed.op === 'put' ? 'PUT' : 'GET');
      sendError(res, 405, 'METHOD_NOT_ALLOWED', `this URL is signed for ${signed.op.toUpperCase()}`, isUpload);
      return;
    }

    switch (signed.op) {
      case 'put': {
        const contentType = req.headers['content-type'];
        if (contentType !== signed.contentType) {
          sendError(res, 400, 'CONTENT_TYPE_MISMATCH', `Content-Type must be ${signed.contentType}`, true);
          return;
        }
        const declared = req.headers['content-length'];
        if (declared === undefined || req.headers['transfer-encoding'] !== undefined) {
          sendError(res, 411, 'LENGTH_REQUIRED', `send Content-Length: ${signed.byteSize}`, true);
          return;
        }
        if (declared !== String(signed.byteSize)) {
          sendError(res, 400, 'SIZE_MISMATCH', `Content-Length must be ${signed.byteSize}`, true);
          return;
        }
        let etag: string | undefined;
        try {
          // destroyOnReturn: false: when the body runs over, stop reading but keep the socket to answer 400.
          const body = { [Symbol.asyncIterator]: () => req.iterator({ destroyOnReturn: false }) };
          ({ etag } = await store.write(key, body, signed.contentType, { exactBytes: signed.byteSize }));
        } catch (error) {
          if (error instanceof ObjectSizeMismatchError) {
            sendError(res, 400, 'SIZE_MISMATCH', `the body must be exactly ${signed.byteSize} bytes`, true);
            return;
          }
          if (req.destroyed || req.readableAborted) {
            res.destroy(); // the client went away mid-upload; write() already removed the partial file
            return;
          }
          throw error;
        }
        res.statusCode = 200;
        if (etag !== undefined) res.setHeader('ETag', `"${etag}"`);
        res.setHeader('Content-Length', 0);
        res.end();
        return;
      }
      case 'get': {
        let opened;
        try {
          opened = await store.open(key);
        } catch (error) {
          if (error instanceof ObjectNotFoundError) {
            sendError(res, 404, 'OBJECT_NOT_FOUND', `no object at ${key}`);
            return;
          }
          throw error;
        }
        const { info, stream } = opened;
        res.statusCode = 200;
        res.setHeader('Content-Type', info.contentType);
        res.setHeader('Content-Length', info.size);
        res.setHeader('ETag', `"${info.etag}"`);
        if (info.lastModified) res.setHeader('Last-Modified', info.lastModified.toUTCString());
        res.setHeader('Cache-Control', 'private, max-age=0');
        // Uploads pick their own content type and are served from the platform's origin: never let one run as a page.
        res.setHeader('X-Content-Type-Options', 'nosniff');
        res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
        if (signed.filename !== undefined) res.setHeader('Content-Disposition', contentDispositionFor(signed.filename));
        await pipeline(stream, res);
        return;
      }
    }
  }
}
