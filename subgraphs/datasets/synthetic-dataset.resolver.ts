import { Arg, Ctx, Field, InputType, Int, Mutation, Resolver } from 'type-graphql';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { DatasetVersion, toDatasetVersion } from './dataset.type.js';
import { SyntheticDatasetService } from './synthetic-dataset.service.js';

@InputType({ description: "Pairs drawn by the project's synthetic generator (real changes labelled, nuisance changes not)" })
export class CreateSyntheticDatasetVersionInput {
  @Field({ description: 'Dataset to add the version to; created when your tenant has none of that name' })
  name!: string;

  @Field(() => Int, { description: 'Number of pairs' })
  pairs!: number;

  @Field(() => Int, { description: 'Side of each square image in pixels (32–2048)' })
  size!: number;

  @Field(() => Int, { description: 'Generator seed: pair i of a seed is always the same image' })
  seed!: number;
}

@Resolver(() => DatasetVersion)
export class SyntheticDatasetResolver {
  constructor(private readonly synthetic: SyntheticDatasetService) {}

  @Mutation(() => DatasetVersion, {
    description: 'Generates synthetic pairs and stores them as a content-addressed version (the same input gives the same version); records the generator parameters in `synthetic`',
  })
  async createSyntheticDatasetVersion(@Arg('input') input: CreateSyntheticDatasetVersionInput, @Ctx() ctx: RequestContext) {
    return toDatasetVersion(await this.synthetic.createVersion(ctx.em, { tenant: ctx.identity.tenant, subject: ctx.identity.subject }, input));
  }
}
