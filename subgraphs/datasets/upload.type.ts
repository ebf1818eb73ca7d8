import { Field, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import type { UploadEntity } from './upload.entity.js';

export enum UploadStatus {
  PENDING = 'PENDING',
  UPLOADED = 'UPLOADED',
  EXPIRED = 'EXPIRED',
}
registerEnumType(UploadStatus, { name: 'UploadStatus', description: 'Whether the bytes have been PUT to the signed URL' });

@ObjectType()
export class HttpHeader {
  @Field()
  name!: string;

  @Field()
  value!: string;
}

@ObjectType({ description: 'A place to PUT one file: send the bytes to `url` with `method` and exactly `headers`' })
export class Upload {
  @Field(() => ID)
  id!: string;

  @Field()
  filename!: string;

  @Field()
  contentType!: string;

  @Field(() => Int)
  byteSize!: number;

  @Field({ nullable: true, description: 'Signed URL; only returned by createUpload, valid until expiresAt' })
  url?: string;

  @Field({ nullable: true })
  method?: string;

  @Field(() => [HttpHeader], { nullable: true })
  headers?: HttpHeader[];

  @Field()
  expiresAt!: Date;

  @Field(() => UploadStatus)
  status!: UploadStatus;

  @Field()
  createdAt!: Date;

  objectKey!: string;
}

export function toUpload(e: UploadEntity, status: UploadStatus): Upload {
  return Object.assign(new Upload(), {
    id: e.id,
    filename: e.filename,
    contentType: e.contentType,
    byteSize: e.byteSize,
    expiresAt: e.expiresAt,
    createdAt: e.createdAt,
    objectKey: e.objectKey,
    status,
  });
}
