import { Field, InputType } from 'type-graphql';
import { JobKind, JobStatus } from './job.contracts.js';

@InputType({ description: 'Every field given must match' })
export class JobFilter {
  @Field(() => JobStatus, { nullable: true })
  status?: JobStatus | null;

  @Field(() => JobKind, { nullable: true })
  kind?: JobKind | null;

  @Field(() => String, { nullable: true })
  modelName?: string | null;
}
