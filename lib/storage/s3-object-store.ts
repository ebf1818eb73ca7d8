// S3 backend (AWS, MinIO, Swift s3api, Ceph): one bucket, optionally under a key prefix.
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type GetObjectCommandOutput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { InvalidStorageArgumentError, ObjectNotFoundError } from './errors.js';
import {
  assertValidContentType,
  assertValidObjectKey,
  assertValidPrefix,
  assertValidPresignGet,
  assertValidPresignPut,
  contentDispositionFor,
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
import type { S3Location } from './storage-config.js';

/** S3 refuses multipart parts under 5 MiB (except the last). */
const MIN_PART_BYTES = 5 * 1024 * 1024;
const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
const HEALTH_TIMEOUT_MS = 5_000;

export interface S3ObjectStoreOptions {
  location: S3Location;
  /** Time source for signing; tests pass a past clock to mint expired URLs. */
  clock?: () => Date;
  /** Keys per ListObjectsV2 page (at most 1000); small values exercise pagination in tests. */
  listPageSize?: number;
  /** Streams longer than this are uploaded in parts of this size (multipart upload); at least 5 MiB. */
  multipartPartBytes?: number;
}

function clientConfig(location: S3Location, endpoint: string | undefined): S3ClientConfig {
  return {
    region: location.region,
    ...(endpoint !== undefined && { endpoint }),
    ...(location.credentials !== undefined && { credentials: location.credentials }),
    // Path-style (`endpoint/bucket/key`): works with every S3-compatible server and needs no wildcard DNS.
    forcePathStyle: true,
    // Since SDK 3.729 the client adds CRC32 checksums (and aws-chunked trailers for streams) to every upload; servers
    // such as Swift s3api and older MinIO reject them, and a checksum baked into a presigned PUT would pin its body.
    // Send checksums only where the API requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 5_000 },
  };
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && (error.name === 'NoSuchKey' || error.name === 'NotFound');
}

function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^"|"$/g, '');
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Cuts a stream into buffers of exactly `partBytes` (the last one may be shorter; nothing for an empty stream). */
async function* fixedSizeParts(stream: NodeJS.ReadableStream, partBytes: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of stream) {
    let rest = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    while (rest.length > 0) {
      const take = Math.min(rest.length, partBytes - pendingBytes);
      pending.push(rest.subarray(0, take));
      pendingBytes += take;
      rest = rest.subarray(take);
      if (pendingBytes === partBytes) {
        yield Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

/** Object storage in an S3 bucket. */
export class S3ObjectStore implements ObjectStore {
  readonly kind = 's3' as const;
  readonly bucket: string;
  private readonly keyPrefix: string;
  private readonly client: S3Client;
  /** Signs presigned URLs for the endpoint clients reach; the same client unless publicEndpoint is set. */
  private readonly presignClient: S3Client;
  private readonly clock: () => Date;
  private readonly listPageSize: number;
  private readonly partBytes: number;

  constructor(options: S3ObjectStoreOptions) {
    const { location } = options;
    this.bucket = location.bucket;
    this.keyPrefix = location.keyPrefix;
    this.client = new S3Client(clientConfig(location, location.endpoint));
    this.presignClient =
      location.publicEndpoint === undefined ? this.client : new S3Client(clientConfig(location, location.publicEndpoint));
    this.clock = options.clock ?? (() => new Date());
    this.listPageSize = options.listPageSize ?? 1000;
    this.partBytes = options.multipartPartBytes ?? DEFAULT_PART_BYTES;
    if (!Number.isInteger(this.listPageSize) || this.listPageSize < 1 || this.listPageSize > 1000) {
      throw new InvalidStorageArgumentError('listPageSize must be an integer from 1 to 1000');
    }
    if (!Number.isInteger(this.partBytes) || this.partBytes < MIN_PART_BYTES) {
      throw new InvalidStorageArgumentError(`multipartPartBytes must be an integer of at least ${MIN_PART_BYTES}`);
    }
  }

  private objectKey(key: string): string {
    assertValidObjectKey(key);
    return this.keyPrefix + key;
  }

  async put(key: string, body: ObjectBody, opts: PutObjectOptions = {}): Promise<PutObjectResult> {
    const Key = this.objectKey(key);
    const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
    assertValidContentType(contentType);
    if (body instanceof Uint8Array) return this.putBuffer(Key, toBuffer(body), contentType);

    // A stream of unknown length: S3 needs a Content-Length per request, and Swift s3api refuses aws-chunked
    // encoding, so buffer one part; a stream that fits is one PutObject, a longer one becomes a multipart upload.
    const parts = fixedSizeParts(body, this.partBytes);
    const first = await parts.next();
    if (first.done) return this.putBuffer(Key, Buffer.alloc(0), contentType);
    const second = await parts.next();
    if (second.done) return this.putBuffer(Key, first.value, contentType);
    return this.putMultipart(Key, contentType, [first.value, second.value], parts);
  }

  private async putBuffer(Key: string, body: Buffer, ContentType: string): Promise<PutObjectResult> {
    const result = await this.client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentType, ContentLength: body.length }),
    );
    const etag = unquote(result.ETag);
    return { size: body.length, ...(etag !== undefined && { etag }) };
  }

  private async putMultipart(
    Key: string,
    ContentType: string,
    firstParts: Buffer[],
    moreParts: AsyncIterable<Buffer>,
  ): Promise<PutObjectResult> {
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key, ContentType }));
    if (UploadId === undefined) throw new Error(`S3 returned no UploadId for ${Key}`);
    try {
      const completed: CompletedPart[] = [];
      let size = 0;
      const upload = async (part: Buffer): Promise<void> => {
        const PartNumber = completed.length + 1;
        const { ETag } = await this.client.send(
          new UploadPartCommand({ Bucket: this.bucket, Key, UploadId, PartNumber, Body: part, ContentLength: part.length }),
        );
        completed.push({ ETag, PartNumber });
        size += part.length;
      };
      for (const part of firstParts) await upload(part);
      for await (const part of moreParts) await upload(part);
      const result = await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId, MultipartUpload: { Parts: completed } }),
      );
      const etag = unquote(result.ETag);
      return { size, ...(etag !== undefined && { etag }) };
    } catch (error) {
      // Leave no orphaned parts (they cost storage and never show up in listings).
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId })).catch(() => undefined);
      throw error;
    }
  }

  private async getObject(key: string): Promise<GetObjectCommandOutput> {
    const Key = this.objectKey(key);
    try {
      return await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(key, { cause: error });
      throw error;
    }
  }

  async get(key: string): Promise<Buffer> {
    const { Body } = await this.getObject(key);
    if (Body === undefined) return Buffer.alloc(0);
    return toBuffer(await Body.transformToByteArray());
  }

  async getStream(key: string): Promise<NodeJS.ReadableStream> {
    const { Body } = await this.getObject(key);
    if (Body === undefined) return Readable.from([]);
    if (!(Body instanceof Readable)) throw new Error('S3 response body is not a Node stream');
    return Body;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const Key = this.objectKey(key);
    try {
      const result = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      const etag = unquote(result.ETag);
      return {
        size: result.ContentLength ?? 0,
        ...(result.ContentType !== undefined && { contentType: result.ContentType }),
        ...(result.LastModified !== undefined && { lastModified: result.LastModified }),
        ...(etag !== undefined && { etag }),
      };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    assertValidPrefix(prefix);
    let ContinuationToken: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.keyPrefix + prefix,
          MaxKeys: this.listPageSize,
          ...(ContinuationToken !== undefined && { ContinuationToken }),
        }),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.keyPrefix)) continue;
        yield { key: object.Key.slice(this.keyPrefix.length), size: object.Size ?? 0 };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken !== undefined);
  }

  /** SigV4 dates have whole seconds; the URL expires at that date plus expiresIn. */
  private signingDate(): Date {
    return new Date(Math.floor(this.clock().getTime() / 1000) * 1000);
  }

  async presignPut(key: string, opts: PresignPutOptions): Promise<PresignedPut> {
    const Key = this.objectKey(key);
    assertValidPresignPut(opts);
    const signingDate = this.signingDate();
    const url = await getSignedUrl(
      this.presignClient,
      new PutObjectCommand({ Bucket: this.bucket, Key, ContentType: opts.contentType, ContentLength: opts.byteSize }),
      {
        expiresIn: opts.expiresInSeconds,
        signingDate,
        // The presigner leaves Content-Type unsigned by default; signing it and Content-Length makes S3 itself refuse
        // an upload of another type or size (SignatureDoesNotMatch).
        signableHeaders: new Set(['content-type', 'content-length']),
      },
    );
    return {
      url,
      method: 'PUT',
      headers: { 'Content-Type': opts.contentType, 'Content-Length': String(opts.byteSize) },
      expiresAt: new Date(signingDate.getTime() + opts.expiresInSeconds * 1000),
    };
  }

  async presignGet(key: string, opts: PresignGetOptions): Promise<PresignedGet> {
    const Key = this.objectKey(key);
    assertValidPresignGet(opts);
    const signingDate = this.signingDate();
    const url = await getSignedUrl(
      this.presignClient,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key,
        ...(opts.filename !== undefined && { ResponseContentDisposition: contentDispositionFor(opts.filename) }),
      }),
      { expiresIn: opts.expiresInSeconds, signingDate },
    );
    return { url, expiresAt: new Date(signingDate.getTime() + opts.expiresInSeconds * 1000) };
  }

  async isHealthy(): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), {
        abortSignal: AbortSignal.timeout(HEALTH_TIMEOUT_MS),
      });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
    if (this.presignClient !== this.client) this.presignClient.destroy();
  }
}
