// Object storage for every service: createObjectStore picks S3 when STORAGE_URL names a bucket, else a local folder.
import { LocalObjectStore } from './local-object-store.js';
import { S3ObjectStore } from './s3-object-store.js';
import { parseLocalSettings, parseStorageUrl, type ObjectStoreConfig } from './storage-config.js';

export * from './errors.js';
export * from './object-store.js';
export {
  MAX_KEY_LENGTH,
  MAX_PRESIGN_EXPIRES_SECONDS,
  MAX_PRESIGNED_PUT_BYTES,
  assertValidContentType,
  assertValidObjectKey,
  assertValidPrefix,
} from './object-key.js';
export {
  STORAGE_URL_FORMAT,
  parseStorageUrl,
  redactStorageUrl,
  type ObjectStoreConfig,
  type S3Location,
  type StorageLocation,
} from './storage-config.js';
export { LocalObjectStore, type LocalObjectStoreOptions } from './local-object-store.js';
export { S3ObjectStore, type S3ObjectStoreOptions } from './s3-object-store.js';
export {
  createLocalSignedUrlHandler,
  type LocalSignedUrlHandlerOptions,
  type NodeRequestHandler,
  type SignedUrlErrorCode,
} from './local-signed-url-handler.js';

export interface CreateObjectStoreOptions {
  /** Time source for signed URLs (tests mint expired URLs with a past clock). */
  clock?: () => Date;
  /** S3 only: keys per list page (1-1000). */
  listPageSize?: number;
  /** S3 only: part size for streamed uploads longer than one part (at least 5 MiB). */
  multipartPartBytes?: number;
}

/** Both backends; `kind` narrows, e.g. to mount createLocalSignedUrlHandler only for the local one. */
export type ConfiguredObjectStore = LocalObjectStore | S3ObjectStore;

/**
 * Builds the store STORAGE_URL (config.url) asks for. Throws StorageConfigError naming the bad setting; makes no
 * network call (check isHealthy() for readiness).
 */
export function createObjectStore(config: ObjectStoreConfig, options: CreateObjectStoreOptions = {}): ConfiguredObjectStore {
  const location = parseStorageUrl(config.url);
  switch (location.kind) {
    case 's3':
      return new S3ObjectStore({
        location,
        ...(options.clock !== undefined && { clock: options.clock }),
        ...(options.listPageSize !== undefined && { listPageSize: options.listPageSize }),
        ...(options.multipartPartBytes !== undefined && { multipartPartBytes: options.multipartPartBytes }),
      });
    case 'local': {
      const settings = parseLocalSettings(config);
      return new LocalObjectStore({
        root: settings.localDir,
        publicBaseUrl: settings.publicBaseUrl,
        signingSecret: settings.signingSecret,
        ...(options.clock !== undefined && { clock: options.clock }),
      });
    }
  }
}
