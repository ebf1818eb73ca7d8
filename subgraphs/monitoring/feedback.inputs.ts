import { Field, ID, InputType, Int } from 'type-graphql';

@InputType({ description: 'A change label for one result of a job' })
export class SubmitFeedbackInput {
  @Field(() => ID)
  jobId!: string;

  @Field(() => Int, { description: 'The pair of the job, numbered from 0' })
  pairIndex!: number;

  @Field(() => ID, { description: 'An upload holding the label: a PNG or TIFF of the size of the result, 0 = no change, 1 or 255 = change' })
  labelUploadId!: string;
}
