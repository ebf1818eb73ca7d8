import { Field, ID, InputType, Int } from 'type-graphql';

@InputType()
export class CreateUploadInput {
  @Field()
  filename!: string;

  @Field()
  contentType!: string;

  @Field(() => Int)
  byteSize!: number;
}

@InputType()
export class CreateDatasetInput {
  @Field()
  name!: string;

  @Field({ nullable: true })
  description?: string;
}

@InputType({ description: 'Upload ids of one pair; the label (optional) is a binary change mask' })
export class DatasetItemInput {
  @Field(() => ID)
  before!: string;

  @Field(() => ID)
  after!: string;

  @Field(() => ID, { nullable: true })
  label?: string | null;
}
