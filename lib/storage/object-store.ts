// The object storage contract every service codes against; the S3 and local backends both satisfy it, and
// object-store.contract.test.ts holds them to it.

export type ObjectBody = Buffer | Uint8Array | NodeJS.ReadableStream;

export interface PutObjectOptions {
  /** Stored and served back on download; application/octet-stream when absent. */
  contentType?: string;
}

export interface PutObjectResult {
  size: number;
  /** Backend entity tag without quotes: the MD5 hex for single-part writes, `<md5>-<parts>` for S3 multipart. */
  etag?: string;
}

export interface ObjectInfo {
  size: number;
  contentType?: string;
  lastModified?: Date;
  etag?: string;
}

export interface ListedObject {
  key: string;
  size: number;
}

export interface PresignPutOptions {
  /** The upload must carry exactly this Content-Type. */
  contentType: string;
  /** The upload must be exactly this many bytes. */
  byteSize: number;
  expiresInSeconds: number;
}

export interface PresignedPut {
  url: string;
  method: 'PUT';
  /**
   * Headers the upload must carry: Content-Type and Content-Length are part of the signature. Browsers set
   * Content-Length themselves from the body (they refuse to let scripts set it); other clients send it as given.
   */
  headers: Record<string, string>;
  expiresAt: Date;
}

export interface PresignGetOptions {
  expiresInSeconds: number;
  /** Served as `Content-Disposition: attachment; filename=...` so browsers save under this name. */
  filename?: string;
}

export interface PresignedGet {
  url: string;
  expiresAt: Date;
}

export interface ObjectStore {
  readonly kind: 's3' | 'local';
  /** Atomic: readers see the previous object or the whole new one, never a partial write. */
  put(key: string, body: ObjectBody, opts?: PutObjectOptions): Promise<PutObjectResult>;
  /** Rejects with ObjectNotFoundError when the key does not exist. */
  get(key: string): Promise<Buffer>;
  /** Rejects with ObjectNotFoundError when the key does not exist (before any byte is streamed). */
  getStream(key: string): Promise<NodeJS.ReadableStream>;
  /** null when the key does not exist. */
  head(key: string): Promise<ObjectInfo | null>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with `prefix` (plain string prefix), in ascending key order. */
  list(prefix: string): AsyncIterable<ListedObject>;
  /** A URL a client can PUT exactly `byteSize` bytes of `contentType` to until it expires. */
  presignPut(key: string, opts: PresignPutOptions): Promise<PresignedPut>;
  /** A URL a client can GET the object from until it expires. */
  presignGet(key: string, opts: PresignGetOptions): Promise<PresignedGet>;
  /** Whether the backend answers and the bucket/folder is usable; never throws. */
  isHealthy(): Promise<boolean>;
  /** Releases connections; the store is unusable afterwards. */
  close(): Promise<void>;
}

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
