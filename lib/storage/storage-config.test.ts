import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createObjectStore, StorageConfigError } from './index.js';
import { parseStorageUrl, redactStorageUrl } from './storage-config.js';

describe('STORAGE_URL', () => {
  it('selects the local folder when unset or empty', () => {
    expect(parseStorageUrl(undefined)).toEqual({ kind: 'local' });
    expect(parseStorageUrl('  ')).toEqual({ kind: 'local' });
  });

  it('reads a bare bucket with AWS defaults', () => {
    expect(parseStorageUrl('s3://lcd-prod')).toEqual({ kind: 's3', bucket: 'lcd-prod', keyPrefix: '', region: 'us-east-1' });
  });

  it('reads credentials, key prefix, endpoint, region and public endpoint', () => {
    const url =
      's3://test%3Atester:se%2Fcr%40et@lcd-test/env/staging/?endpoint=http://127.0.0.1:8080/&region=eu-west-1' +
      '&publicEndpoint=https://s3.example.org';
    expect(parseStorageUrl(url)).toEqual({
      kind: 's3',
      bucket: 'lcd-test',
      keyPrefix: 'env/staging/',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:8080',
      publicEndpoint: 'https://s3.example.org',
      credentials: { accessKeyId: 'test:tester', secretAccessKey: 'se/cr@et' },
    });
  });

  it.each([
    ['not a url', /not a URL/],
    ['http://bucket', /unsupported scheme "http"/],
    ['s3://Bad_Bucket', /bucket/],
    ['s3://ab', /bucket/],
    ['s3://bucket?endpoint=ftp://x', /endpoint/],
    ['s3://bucket?endpoint=not-a-url', /endpoint/],
    ['s3://bucket?regoin=us-east-1', /unknown parameter "regoin"/],
    ['s3://bucket?region=US%20EAST', /region/],
    ['s3://bucket:9000', /endpoint=/],
    ['s3://onlykey@bucket', /both ACCESS_KEY and SECRET/],
    ['s3://bucket/a%20b', /prefix/],
  ])('refuses %s with an error naming STORAGE_URL', (value, detail) => {
    let error: unknown;
    try {
      parseStorageUrl(value);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StorageConfigError);
    expect((error as Error).message).toMatch(/^STORAGE_URL is invalid: /);
    expect((error as Error).message).toMatch(detail);
  });

  it('never echoes the secret', () => {
    const secret = 'Sup3rS3cret';
    for (const value of [`s3://key:${secret}@Bad_Bucket`, `s3://key:${secret}@bucket?endpoint=nope`]) {
      expect(() => parseStorageUrl(value)).toThrow(StorageConfigError);
      try {
        parseStorageUrl(value);
      } catch (error) {
        expect((error as Error).message).not.toContain(secret);
      }
    }
    expect(redactStorageUrl(`s3://key:${secret}@bucket?region=us-east-1`)).toBe('s3://key:***@bucket?region=us-east-1');
  });

  it('names the local settings that are wrong', () => {
    expect(() =>
      createObjectStore({ localDir: '/tmp/x', publicBaseUrl: 'http://localhost:4000', signingSecret: Buffer.from('short') }),
    ).toThrow(/signingSecret must be at least 32 bytes/);
    expect(() =>
      createObjectStore({ localDir: '/tmp/x', publicBaseUrl: 'localhost:4000', signingSecret: randomBytes(32) }),
    ).toThrow(/publicBaseUrl/);
  });

  it('builds the backend the URL names', async () => {
    const common = { localDir: '/tmp/lcd-unused', publicBaseUrl: 'http://localhost:4000/', signingSecret: randomBytes(32) };
    const local = createObjectStore(common);
    const s3 = createObjectStore({ ...common, url: 's3://k:s@bucket?endpoint=http://127.0.0.1:1' });
    expect(local.kind).toBe('local');
    expect(s3.kind).toBe('s3');
    await Promise.all([local.close(), s3.close()]);
  });
});
