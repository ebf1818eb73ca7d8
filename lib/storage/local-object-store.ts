// Local folder backend: objects as files under one folder, written atomically (temporary file, fsync, rename).
//
// Layout: key `a/b/mask.png` is the file `<root>/a/b/mask.png~obj`. The `~obj` suffix (`~` is never in a key) lets a key
// and a "folder" of the same name coexist (`a` and `a/b`), as on S3, and keeps temporary files (`.~tmp-*`) out of
// listings. Each file starts with a fixed 512-byte header holding the content type, size and MD5, so the metadata is
// replaced in the same rename as the bytes: no reader ever pairs new bytes with old metadata.
import { createHash, randomUUID } from 'node:crypto';
import { constants as fsConstants, type Dirent } from 'node:fs';
import { access, mkdir, open, readdir, readFile, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { ObjectCorruptError, ObjectNotFoundError, ObjectSizeMismatchError } from './errors.js';
import { buildLocalSignedUrl, verifyLocalSignedUrl, type VerifyResult } from './local-signed-url.js';
import {
  assertValidContentType,
  assertValidObjectKey,
  assertValidPrefix,
  assertValidPresignGet,
  assertValidPresignPut,
} from './object-key.js';
import {
  DEFAULT_CONTENT_TYPE,
  type ListedObject,
  type ObjectBody,
  type ObjectInfo,
  type ObjectStore,
  type PresignedGet,
  type PresignedPut,
  type PresignGetOptions,
  type PresignPutOptions,
  type PutObjectOptions,
  type PutObjectResult,
} from './object-store.js';

const OBJECT_SUFFIX = '~obj';
const TEMP_PREFIX = '.~tmp-';
const HEADER_BYTES = 512;
const HEADER_MAGIC = 'lcd-object/1 ';

interface ObjectHeader {
  contentType: string;
  size: number;
  etag: string;
}

export interface LocalObjectStoreOptions {
  root: string;
  publicBaseUrl: string;
  signingSecret: Buffer;
  /** Time source for signing; tests pass a past clock to mint expired URLs. */
  clock?: () => Date;
}

export interface WriteLimits {
  /** Refuse (and leave nothing behind) unless the body is exactly this many bytes; stops reading at one byte more. */
  exactBytes?: number;
}

/** An open object: its metadata and a stream of its bytes, read from the same file version. */
export interface OpenedObject {
  info: ObjectInfo & { contentType: string; etag: string };
  stream: NodeJS.ReadableStream;
}

function isErrno(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '');
}

function encodeHeader(header: ObjectHeader): Buffer {
  const text = `${HEADER_MAGIC}${JSON.stringify(header)}`;
  // Content types are at most 255 characters, so the header always fits.
  return Buffer.from(text.padEnd(HEADER_BYTES - 1, ' ') + '\n', 'utf8');
}

function decodeHeader(key: string, bytes: Buffer): ObjectHeader {
  const text = bytes.subarray(0, HEADER_BYTES).toString('utf8');
  if (bytes.length < HEADER_BYTES || !text.startsWith(HEADER_MAGIC)) throw new ObjectCorruptError(key, 'missing header');
  try {
    const parsed = JSON.parse(text.slice(HEADER_MAGIC.length)) as Partial<ObjectHeader>;
    if (typeof parsed.contentType !== 'string' || typeof parsed.size !== 'number' || typeof parsed.etag !== 'string') {
      throw new Error('incomplete');
    }
    return { contentType: parsed.contentType, size: parsed.size, etag: parsed.etag };
  } catch {
    throw new ObjectCorruptError(key, 'bad header');
  }
}

/** What write() consumes: a put() body, or any async iterable of chunks (e.g. a request body iterator). */
export type WriteSource = ObjectBody | AsyncIterable<Uint8Array | string>;

async function* chunksOf(body: WriteSource): AsyncIterable<Buffer> {
  if (Buffer.isBuffer(body)) {
    yield body;
  } else if (body instanceof Uint8Array) {
    yield Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  } else {
    for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
      if (typeof chunk === 'string') yield Buffer.from(chunk);
      else yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
  }
}

/** Object storage in a local folder; the platform serves its signed URLs with createLocalSignedUrlHandler. */
export class LocalObjectStore implements ObjectStore {
  readonly kind = 'local' as const;
  readonly root: string;
  readonly publicBaseUrl: string;
  private readonly signingSecret: Buffer;
  private readonly clock: () => Date;

  constructor(options: LocalObjectStoreOptions) {
    this.root = resolve(options.root);
    this.publicBaseUrl = options.publicBaseUrl.replace(/\/+$/, '');
    this.signingSecret = options.signingSecret;
    this.clock = options.clock ?? (() => new Date());
  }

  private pathOf(key: string): string {
    assertValidObjectKey(key);
    const path = join(this.root, ...key.split('/')) + OBJECT_SUFFIX;
    // Key validation already rules out "..": this is a second lock on the same door.
    if (!path.startsWith(this.root + sep)) throw new Error(`key escapes the storage folder: ${key}`);
    return path;
  }

  async put(key: string, body: ObjectBody, opts: PutObjectOptions = {}): Promise<PutObjectResult> {
    return this.write(key, body, opts.contentType ?? DEFAULT_CONTENT_TYPE);
  }

  /** put() with limits; the signed-URL handler uses it to hold an upload to its signed size. */
  async write(key: string, body: WriteSource, contentType: string, limits: WriteLimits = {}): Promise<PutObjectResult> {
    const path = this.pathOf(key);
    assertValidContentType(contentType);
    const { handle, tempPath } = await this.createTempFile(dirname(path));
    let committed = false;
    // Durable before visible: after a crash the key holds the old object or the whole new one.
    const commit = async (size: number, etag: string): Promise<PutObjectResult> => {
      // The data and the size: all a reader of the renamed file needs (fdatasync).
      await handle.datasync();
      await handle.close();
      await rename(tempPath, path);
      committed = true;
      return { size, etag };
    };
    try {
      if (body instanceof Uint8Array) {
        // In memory already (results, small objects): header and bytes in one write.
        if (limits.exactBytes !== undefined && body.length !== limits.exactBytes) throw new ObjectSizeMismatchError(key, limits.exactBytes, body.length);
        const etag = createHash('md5').update(body).digest('hex');
        const { bytesWritten } = await handle.writev([encodeHeader({ contentType, size: body.length, etag }), body], 0);
        if (bytesWritten !== HEADER_BYTES + body.length) throw new Error(`short write of ${key}: ${bytesWritten} of ${HEADER_BYTES + body.length} bytes`);
        return await commit(body.length, etag);
      }
      await handle.write(Buffer.alloc(HEADER_BYTES, 0x20), 0, HEADER_BYTES, 0);
      const md5 = createHash('md5');
      let size = 0;
      for await (const chunk of chunksOf(body)) {
        if (limits.exactBytes !== undefined && size + chunk.length > limits.exactBytes) {
          throw new ObjectSizeMismatchError(key, limits.exactBytes, limits.exactBytes + 1);
        }
        md5.update(chunk);
        await handle.write(chunk, 0, chunk.length, HEADER_BYTES + size);
        size += chunk.length;
      }
      if (limits.exactBytes !== undefined && size !== limits.exactBytes) {
        throw new ObjectSizeMismatchError(key, limits.exactBytes, size);
      }
      const etag = md5.digest('hex');
      await handle.write(encodeHeader({ contentType, size, etag }), 0, HEADER_BYTES, 0);
      return await commit(size, etag);
    } finally {
      if (!committed) {
        await handle.close().catch(() => undefined);
        await unlink(tempPath).catch(() => undefined);
      }
    }
  }

  private async createTempFile(dir: string): Promise<{ handle: FileHandle; tempPath: string }> {
    // delete() prunes empty folders; one may vanish between mkdir and open, so try again.
    for (let attempt = 1; ; attempt++) {
      await this.ensureDir(dir, attempt > 1);
      const tempPath = join(dir, `${TEMP_PREFIX}${randomUUID()}`);
      try {
        return { handle: await open(tempPath, 'wx', 0o644), tempPath };
      } catch (error) {
        if (!isErrno(error, 'ENOENT') || attempt >= 5) throw error;
      }
    }
  }

  /** Folders made lately: the objects of one result share theirs, and make it once instead of once each. */
  private readonly madeDirs = new Map<string, Promise<unknown>>();

  private ensureDir(dir: string, again: boolean): Promise<unknown> {
    let made = again ? undefined : this.madeDirs.get(dir);
    if (!made) {
      made = mkdir(dir, { recursive: true });
      made.catch(() => this.madeDirs.delete(dir));
      if (this.madeDirs.size >= 256) this.madeDirs.delete(this.madeDirs.keys().next().value!);
      this.madeDirs.set(dir, made);
    }
    return made;
  }

  async get(key: string): Promise<Buffer> {
    const path = this.pathOf(key);
    let file: Buffer;
    try {
      file = await readFile(path);
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) throw new ObjectNotFoundError(key, { cause: error });
      throw error;
    }
    const header = decodeHeader(key, file);
    const bytes = file.subarray(HEADER_BYTES);
    if (bytes.length !== header.size) throw new ObjectCorruptError(key, `size ${bytes.length} differs from header ${header.size}`);
    return bytes;
  }

  async getStream(key: string): Promise<NodeJS.ReadableStream> {
    return (await this.open(key)).stream;
  }

  /** Opens one version of the object: header and bytes come from the same file even if it is replaced meanwhile. */
  async open(key: string): Promise<OpenedObject> {
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) throw new ObjectNotFoundError(key, { cause: error });
      throw error;
    }
    try {
      const { header, mtime } = await this.readHeader(key, handle);
      const stream = handle.createReadStream({ start: HEADER_BYTES, autoClose: true });
      return {
        info: { size: header.size, contentType: header.contentType, etag: header.etag, lastModified: mtime },
        stream,
      };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  private async readHeader(key: string, handle: FileHandle): Promise<{ header: ObjectHeader; mtime: Date }> {
    const buffer = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, HEADER_BYTES, 0);
    const header = decodeHeader(key, buffer.subarray(0, bytesRead));
    const stats = await handle.stat();
    return { header, mtime: stats.mtime };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return null;
      throw error;
    }
    try {
      const { header, mtime } = await this.readHeader(key, handle);
      return { size: header.size, contentType: header.contentType, etag: header.etag, lastModified: mtime };
    } finally {
      await handle.close();
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return;
      throw error;
    }
    // Prune folders left empty, so deleted job prefixes do not pile up; stops at the first folder still in use.
    for (let dir = dirname(path); dir.startsWith(this.root + sep); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
    }
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    assertValidPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const dirKey = prefix.slice(0, slash + 1); // '' or 'a/b/'
    const namePrefix = prefix.slice(slash + 1);
    yield* this.walk(dirKey, namePrefix);
  }

  /** Depth-first in key order: a folder `x` sorts as `x/`, so `a-b` < `a.b` < `a/...` as in S3's byte order. */
  private async *walk(dirKey: string, namePrefix: string): AsyncIterable<ListedObject> {
    const dirPath = join(this.root, ...dirKey.split('/').filter(Boolean));
    let entries: Dirent[];
    try {
      entries = await readdir(dirPath, { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return;
      throw error;
    }
    const items: { sortName: string; name: string; isDir: boolean }[] = [];
    for (const entry of entries) {
      if (entry.isDirectory()) {
        if (entry.name.startsWith(namePrefix)) items.push({ sortName: `${entry.name}/`, name: entry.name, isDir: true });
      } else if (entry.isFile() && entry.name.endsWith(OBJECT_SUFFIX)) {
        const name = entry.name.slice(0, -OBJECT_SUFFIX.length);
        if (name.startsWith(namePrefix)) items.push({ sortName: name, name, isDir: false });
      }
    }
    items.sort((a, b) => (a.sortName < b.sortName ? -1 : a.sortName > b.sortName ? 1 : 0));
    for (const item of items) {
      if (item.isDir) {
        yield* this.walk(`${dirKey}${item.name}/`, '');
        continue;
      }
      try {
        const stats = await stat(join(dirPath, item.name + OBJECT_SUFFIX));
        yield { key: `${dirKey}${item.name}`, size: stats.size - HEADER_BYTES };
      } catch (error) {
        if (!isErrno(error, 'ENOENT')) throw error; // deleted while listing: as if listed a moment later
      }
    }
  }

  async presignPut(key: string, opts: PresignPutOptions): Promise<PresignedPut> {
    assertValidObjectKey(key);
    assertValidPresignPut(opts);
    const expiresAt = Math.floor(this.clock().getTime() / 1000) + opts.expiresInSeconds;
    const url = buildLocalSignedUrl(this.publicBaseUrl, this.signingSecret, {
      op: 'put',
      key,
      expiresAt,
      contentType: opts.contentType,
      byteSize: opts.byteSize,
    });
    return {
      url,
      method: 'PUT',
      headers: { 'Content-Type': opts.contentType, 'Content-Length': String(opts.byteSize) },
      expiresAt: new Date(expiresAt * 1000),
    };
  }

  async presignGet(key: string, opts: PresignGetOptions): Promise<PresignedGet> {
    assertValidObjectKey(key);
    assertValidPresignGet(opts);
    const expiresAt = Math.floor(this.clock().getTime() / 1000) + opts.expiresInSeconds;
    const url = buildLocalSignedUrl(this.publicBaseUrl, this.signingSecret, {
      op: 'get',
      key,
      expiresAt,
      ...(opts.filename !== undefined && { filename: opts.filename }),
    });
    return { url, expiresAt: new Date(expiresAt * 1000) };
  }

  /** Checks a signed URL's query for `key` against this store's secret and the current time. */
  verifySignedUrl(key: string, query: URLSearchParams, nowMs: number = Date.now()): VerifyResult {
    return verifyLocalSignedUrl(this.signingSecret, key, query, nowMs);
  }

  async isHealthy(): Promise<boolean> {
    try {
      await mkdir(this.root, { recursive: true });
      await access(this.root, fsConstants.R_OK | fsConstants.W_OK);
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {}
}
