// Job events clients can subscribe to through the gateway: `jobProgress` (one job; ends when the job ends) and
// `jobUpdates` (every job of the caller's tenant). Events are logged by JobService in the job's transaction.
import { Arg, Field, Float, ID, Int, ObjectType, Resolver, Subscription } from 'type-graphql';
import { servedByGateway } from '../../lib/graphql/subscriptions.js';
import { JobPairStatus, JobStatus } from './job.contracts.js';
import { Job } from './job.type.js';

@ObjectType({ description: 'The pair a progress event concerns' })
export class JobPairUpdate {
  @Field(() => Int)
  index!: number;

  @Field(() => JobPairStatus)
  status!: JobPairStatus;

  @Field(() => String, { nullable: true })
  error!: string | null;
}

@ObjectType({ description: 'A change in a job: its status and progress, and the pair it concerns' })
export class JobProgressEvent {
  @Field(() => Int, { description: 'Increasing within the stream; resume with afterSequence = the last one seen' })
  sequence!: number;

  @Field()
  occurredAt!: string;

  @Field(() => ID)
  jobId!: string;

  @Field(() => JobStatus)
  status!: JobStatus;

  @Field(() => Float, { description: 'Finished pairs / pairs, 0–1' })
  progress!: number;

  @Field(() => Int)
  pairCount!: number;

  @Field(() => Int)
  succeededCount!: number;

  @Field(() => Int)
  failedCount!: number;

  @Field(() => JobPairUpdate, { nullable: true })
  pair!: JobPairUpdate | null;

  @Field(() => Job, { description: 'The job now, resolved through the federated graph with your selection' })
  job!: Job;
}

@Resolver()
export class JobEventsResolver {
  @Subscription(() => JobProgressEvent, { subscribe: servedByGateway, description: "One job's progress; completes when the job ends" })
  jobProgress(
    @Arg('jobId', () => ID) _jobId: string,
    @Arg('afterSequence', () => Int, { nullable: true, description: 'Replay events after this sequence first (0: the whole stream)' }) _afterSequence?: number,
  ): JobProgressEvent {
    return servedByGateway();
  }

  @Subscription(() => JobProgressEvent, { subscribe: servedByGateway, description: "Progress of every job of your tenant" })
  jobUpdates(@Arg('afterSequence', () => Int, { nullable: true }) _afterSequence?: number): JobProgressEvent {
    return servedByGateway();
  }
}
