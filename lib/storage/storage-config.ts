// Parses STORAGE_URL, the one setting that picks the object storage backend.
//
//   (unset or empty)                     local folder backend, in `localDir` (the platform's state folder)
//   s3://BUCKET                          S3; region us-east-1, credentials from the AWS SDK default chain
//   s3://ACCESS_KEY:SECRET@BUCKET/PREFIX?endpoint=http://127.0.0.1:8080&region=eu-west-1&publicEndpoint=https://s3.example
//
//   ACCESS_KEY, SECRET  optional, percent-encoded (":" in "test:tester" is "%3A"); both or neither. Without them the
//                       SDK default chain applies (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, IAM role).
//   BUCKET              an S3 bucket name (3-63 of a-z 0-9 . -).
//   /PREFIX             optional: every key is stored under PREFIX/ (one bucket shared by several environments).
//   endpoint            optional http(s) URL of an S3-compatible server (MinIO, Swift s3api, Ceph); AWS when absent.
//   region              optional, default us-east-1.
//   publicEndpoint      optional http(s) URL clients use to reach the same server; presigned URLs are signed for it
//                       (for when the services reach S3 at an internal address that browsers cannot).
import { z } from 'zod';
import { StorageConfigError } from './errors.js';
import { assertValidPrefix } from './object-key.js';

export interface ObjectStoreConfig {
  /** STORAGE_URL; unset or empty selects the local folder backend. */
  url?: string;
  /** Folder of the local backend (inside the platform's state folder). */
  localDir: string;
  /** Base URL where the platform serves local signed URLs (the handler is mounted under `<base>/storage/`). */
  publicBaseUrl: string;
  /** HMAC key for local signed URLs; at least 32 bytes. */
  signingSecret: Buffer;
}

export interface S3Location {
  kind: 's3';
  bucket: string;
  /** '' or a prefix ending in '/'. */
  keyPrefix: string;
  region: string;
  endpoint?: string;
  publicEndpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export type StorageLocation = { kind: 'local' } | S3Location;

export const STORAGE_URL_FORMAT =
  's3://[ACCESS_KEY:SECRET@]BUCKET[/PREFIX][?endpoint=URL&region=REGION&publicEndpoint=URL], or unset for the local folder';

const httpUrl = z
  .string()
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.search === '' && url.hash === '';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL without query or fragment')
  .transform((value) => value.replace(/\/+$/, ''));

const s3LocationSchema = z
  .object({
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'bucket must be 3-63 characters of a-z, 0-9, "." and "-"')
      .refine((b) => !b.includes('..') && !/^\d+\.\d+\.\d+\.\d+$/.test(b), 'bucket is not a valid S3 bucket name'),
    keyPrefix: z.string(),
    region: z.string().regex(/^[a-z0-9-]{1,32}$/, 'region must look like us-east-1'),
    endpoint: httpUrl.optional(),
    publicEndpoint: httpUrl.optional(),
    accessKeyId: z.string().optional(),
    secretAccessKey: z.string().optional(),
  })
  .refine((v) => (v.accessKeyId === undefined) === (v.secretAccessKey === undefined), {
    message: 'give both ACCESS_KEY and SECRET (s3://ACCESS_KEY:SECRET@BUCKET) or neither',
  });

const KNOWN_PARAMS = new Set(['endpoint', 'region', 'publicEndpoint']);

function invalid(detail: string, setting = 'STORAGE_URL'): StorageConfigError {
  return new StorageConfigError(`${setting} is invalid: ${detail}. Expected ${STORAGE_URL_FORMAT}`);
}

/** Parses STORAGE_URL; throws StorageConfigError naming STORAGE_URL (and never echoing credentials) when bad. */
export function parseStorageUrl(value: string | undefined): StorageLocation {
  if (value === undefined || value.trim() === '') return { kind: 'local' };
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw invalid('not a URL');
  }
  if (url.protocol !== 's3:') throw invalid(`unsupported scheme "${url.protocol.replace(/:$/, '')}"`);
  if (url.hash !== '') throw invalid('a fragment (#...) is not allowed');
  for (const name of url.searchParams.keys()) {
    if (!KNOWN_PARAMS.has(name)) throw invalid(`unknown parameter "${name}"`);
  }
  if (url.port !== '') throw invalid('the host part is the bucket name; put the server address in ?endpoint=');

  let accessKeyId: string | undefined;
  let secretAccessKey: string | undefined;
  let rawPrefix: string;
  try {
    accessKeyId = url.username === '' ? undefined : decodeURIComponent(url.username);
    secretAccessKey = url.password === '' ? undefined : decodeURIComponent(url.password);
    rawPrefix = decodeURIComponent(url.pathname.replace(/^\/+/, ''));
  } catch {
    throw invalid('bad percent-encoding');
  }
  const keyPrefix = rawPrefix === '' ? '' : `${rawPrefix.replace(/\/+$/, '')}/`;
  if (keyPrefix !== '') {
    try {
      assertValidPrefix(keyPrefix);
    } catch (error) {
      throw invalid(`bad key prefix: ${(error as Error).message}`);
    }
  }

  const parsed = s3LocationSchema.safeParse({
    bucket: url.hostname,
    keyPrefix,
    region: url.searchParams.get('region') ?? 'us-east-1',
    endpoint: url.searchParams.get('endpoint') ?? undefined,
    publicEndpoint: url.searchParams.get('publicEndpoint') ?? undefined,
    accessKeyId,
    secretAccessKey,
  });
  if (!parsed.success) {
    // Zod issues carry the path and a message but not the offending value: safe to show with credentials around.
    throw invalid(parsed.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; '));
  }
  const v = parsed.data;
  return {
    kind: 's3',
    bucket: v.bucket,
    keyPrefix: v.keyPrefix,
    region: v.region,
    ...(v.endpoint !== undefined && { endpoint: v.endpoint }),
    ...(v.publicEndpoint !== undefined && { publicEndpoint: v.publicEndpoint }),
    ...(v.accessKeyId !== undefined &&
      v.secretAccessKey !== undefined && { credentials: { accessKeyId: v.accessKeyId, secretAccessKey: v.secretAccessKey } }),
  };
}

/** STORAGE_URL with the secret replaced, for start-up logs. */
export function redactStorageUrl(value: string | undefined): string {
  if (value === undefined || value.trim() === '') return '(local folder)';
  try {
    const url = new URL(value.trim());
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    return '(unparseable)';
  }
}

const localSettingsSchema = z.object({
  localDir: z.string().min(1, 'localDir must be a folder path'),
  publicBaseUrl: httpUrl,
  signingSecret: z
    .instanceof(Buffer, { message: 'signingSecret must be a Buffer' })
    .refine((b) => b.length >= 32, 'signingSecret must be at least 32 bytes'),
});

export interface LocalSettings {
  localDir: string;
  publicBaseUrl: string;
  signingSecret: Buffer;
}

/** Validates the settings of the local backend; errors name the setting. */
export function parseLocalSettings(config: ObjectStoreConfig): LocalSettings {
  const parsed = localSettingsSchema.safeParse(config);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new StorageConfigError(`local object storage settings are invalid: ${detail}`);
  }
  return parsed.data;
}
