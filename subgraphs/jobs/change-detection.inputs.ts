import { Field, Float, ID, InputType } from 'type-graphql';

@InputType({ description: 'A before/after pair of uploads (createUpload), co-registered and of the same size' })
export class ChangePairInput {
  @Field(() => ID)
  beforeUploadId!: string;

  @Field(() => ID)
  afterUploadId!: string;
}

@InputType()
export class DetectChangesInput {
  @Field(() => ID)
  beforeUploadId!: string;

  @Field(() => ID)
  afterUploadId!: string;

  @Field(() => String, { nullable: true, description: "Registered model; default: the platform's default model" })
  modelName?: string | null;

  @Field(() => Float, { nullable: true, description: "Change probability threshold 0–1; default: the model's own" })
  threshold?: number | null;
}

@InputType()
export class SubmitChangeDetectionJobInput {
  @Field(() => [ChangePairInput])
  pairs!: ChangePairInput[];

  @Field(() => ID, { nullable: true, description: 'The dataset version the pairs come from, if any (recorded with the job)' })
  datasetVersionId?: string | null;

  @Field(() => String, { nullable: true, description: "Registered model; default: the platform's default model" })
  modelName?: string | null;

  @Field(() => Float, { nullable: true, description: "Change probability threshold 0–1; default: the model's own" })
  threshold?: number | null;

  @Field(() => String, { nullable: true, description: 'Repeating a submission with the same key returns the same job' })
  idempotencyKey?: string | null;
}
