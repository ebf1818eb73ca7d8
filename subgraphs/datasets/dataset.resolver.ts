import { Arg, Args, ArgsType, Ctx, Field, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import { badInput } from '../../lib/errors.js';
import { checkPageSize, PageInfo } from '../../lib/graphql/connection.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { CreateDatasetInput, CreateUploadInput, DatasetItemInput } from './dataset.inputs.js';
import { DatasetRepository } from './dataset.repository.js';
import { DatasetService } from './dataset.service.js';
import {
  Dataset,
  DatasetConnection,
  DatasetItemConnection,
  DatasetVersion,
  DatasetVersionConnection,
  toDataset,
  toDatasetItem,
  toDatasetVersion,
} from './dataset.type.js';
import { toUpload, Upload } from './upload.type.js';

@ArgsType()
export class PageArgs {
  @Field(() => Int, { nullable: true, description: 'Page size, 1–100 (default 20)' })
  first?: number | null;

  @Field(() => String, { nullable: true, description: 'Cursor of the last item of the previous page' })
  after?: string | null;
}

const actor = (ctx: RequestContext) => ({ tenant: ctx.identity.tenant, subject: ctx.identity.subject });

@Resolver(() => Dataset)
export class DatasetResolver {
  constructor(
    private readonly service: DatasetService,
    private readonly repository: DatasetRepository,
  ) {}

  @Query(() => DatasetConnection, { description: 'Datasets of your tenant, newest first' })
  async datasets(@Args() page: PageArgs, @Ctx() ctx: RequestContext) {
    return this.repository.pageDatasets(ctx.em, ctx.identity.tenant, page, toDataset);
  }

  @Query(() => Dataset)
  async dataset(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toDataset(await this.service.getDataset(ctx.em, actor(ctx), id));
  }

  @Mutation(() => Dataset)
  async createDataset(@Arg('input') input: CreateDatasetInput, @Ctx() ctx: RequestContext) {
    return toDataset(await this.service.createDataset(ctx.em, actor(ctx), input));
  }

  @FieldResolver(() => DatasetVersionConnection)
  async versions(@Root() dataset: Dataset, @Args() page: PageArgs, @Ctx() ctx: RequestContext) {
    return this.repository.pageVersions(ctx.em, ctx.identity.tenant, dataset.id, page, toDatasetVersion);
  }

  @FieldResolver(() => DatasetVersion, { nullable: true })
  async latestVersion(@Root() dataset: Dataset, @Ctx() ctx: RequestContext) {
    const latest = await this.repository.latestVersion(ctx.em, dataset.id);
    return latest ? toDatasetVersion(latest) : null;
  }
}

@Resolver(() => DatasetVersion)
export class DatasetVersionResolver {
  constructor(
    private readonly service: DatasetService,
    private readonly repository: DatasetRepository,
  ) {}

  @Query(() => DatasetVersion)
  async datasetVersion(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toDatasetVersion(await this.service.getVersion(ctx.em, actor(ctx), id));
  }

  @Mutation(() => DatasetVersion, {
    description: 'Makes an immutable version from uploaded pairs; the same items return the same version',
  })
  async createDatasetVersion(
    @Arg('datasetId', () => ID) datasetId: string,
    @Arg('items', () => [DatasetItemInput]) items: DatasetItemInput[],
    @Ctx() ctx: RequestContext,
  ) {
    return toDatasetVersion(await this.service.createVersion(ctx.em, actor(ctx), datasetId, items));
  }

  @FieldResolver(() => Dataset)
  async dataset(@Root() version: DatasetVersion, @Ctx() ctx: RequestContext) {
    return toDataset(await this.service.getDataset(ctx.em, actor(ctx), version.datasetId));
  }

  @FieldResolver(() => DatasetItemConnection, { description: 'Items in index order' })
  async items(@Root() version: DatasetVersion, @Args() page: PageArgs, @Ctx() ctx: RequestContext) {
    const first = checkPageSize(page.first);
    const offset = page.after ? decodeIndexCursor(page.after) + 1 : 0;
    const { items, total } = await this.repository.pageItems(ctx.em, version.id, { first, offset });
    const edges = items.map((item) => ({ node: toDatasetItem(item), cursor: encodeIndexCursor(item.index) }));
    const pageInfo = Object.assign(new PageInfo(), { hasNextPage: offset + items.length < total, endCursor: edges.at(-1)?.cursor ?? null });
    return { edges, pageInfo, totalCount: total };
  }
}

function encodeIndexCursor(index: number): string {
  return Buffer.from(`item:${index}`).toString('base64url');
}

function decodeIndexCursor(cursor: string): number {
  const match = /^item:(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw badInput('"after" is not a cursor this API issued', 'after');
  return Number(match[1]);
}

@Resolver(() => Upload)
export class UploadResolver {
  constructor(private readonly service: DatasetService) {}

  @Mutation(() => Upload, { description: 'Returns a signed URL valid for minutes: PUT the bytes there with the given headers' })
  async createUpload(@Arg('input') input: CreateUploadInput, @Ctx() ctx: RequestContext) {
    const { upload, signed } = await this.service.createUpload(ctx.em, actor(ctx), input);
    return Object.assign(toUpload(upload, 'PENDING' as never), {
      url: signed.url,
      method: signed.method,
      headers: Object.entries(signed.headers).map(([name, value]) => ({ name, value })),
    });
  }

  @Query(() => Upload, { nullable: true, description: 'An upload of yours (analysts and above; null with a FORBIDDEN error otherwise)' })
  async upload(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    const upload = await this.service.getUpload(ctx.em, actor(ctx), id);
    return toUpload(upload, await this.service.uploadStatus(upload));
  }
}
