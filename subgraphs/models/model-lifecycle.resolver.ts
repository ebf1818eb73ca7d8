import { Arg, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { PromotionStatus } from './lifecycle.contracts.js';
import { RemoveModelAliasInput, RequestPromotionInput, SetModelAliasInput } from './model-lifecycle.inputs.js';
import { ModelLifecycleService } from './model-lifecycle.service.js';
import { ModelStage } from './models.contracts.js';
import { ModelVersion, PromotionRequest, StageChange, toModelVersion, toPromotionRequest, toStageChange } from './model-version.type.js';

/** Promotion by request and four-eyes approval, aliases, rollback's history and the point-in-time question. */
@Resolver()
export class ModelLifecycleResolver {
  constructor(private readonly lifecycle: ModelLifecycleService) {}

  @Mutation(() => PromotionRequest, {
    description:
      'Asks for a STAGING version whose gate passed to go to PRODUCTION (ml-engineer); the evaluation report and the latest drift report are attached as evidence',
  })
  async requestPromotion(@Arg('input') input: RequestPromotionInput, @Ctx() ctx: RequestContext) {
    const request = await this.lifecycle.requestPromotion(ctx.em, ctx.identity, input);
    return toPromotionRequest(await this.lifecycle.getPromotionRequest(ctx.em.fork(), ctx.identity, request.id));
  }

  @Mutation(() => PromotionRequest, {
    description: 'Approves a pending request (approver, not the requester): the version becomes PRODUCTION and the previous one ARCHIVED, at once',
  })
  async approvePromotion(
    @Arg('requestId', () => ID) requestId: string,
    @Arg('reason', () => String, { nullable: true, description: 'An optional comment, kept with the decision' }) reason: string | null | undefined,
    @Ctx() ctx: RequestContext,
  ) {
    return toPromotionRequest(await this.lifecycle.approvePromotion(ctx.em, ctx.identity, requestId, reason));
  }

  @Mutation(() => PromotionRequest, { description: 'Rejects a pending request, saying why (approver, not the requester)' })
  async rejectPromotion(@Arg('requestId', () => ID) requestId: string, @Arg('reason') reason: string, @Ctx() ctx: RequestContext) {
    return toPromotionRequest(await this.lifecycle.rejectPromotion(ctx.em, ctx.identity, requestId, reason));
  }

  @Mutation(() => PromotionRequest, {
    description: 'Withdraws a pending request, saying why (its requester, or an admin of the tenant); it becomes CANCELLED and the history records it',
  })
  async cancelPromotionRequest(@Arg('id', () => ID) id: string, @Arg('reason') reason: string, @Ctx() ctx: RequestContext) {
    return toPromotionRequest(await this.lifecycle.cancelPromotionRequest(ctx.em, ctx.identity, id, reason));
  }

  @Query(() => [PromotionRequest], { description: "A model's promotion requests, newest first (at most 200), optionally of one status" })
  async promotionRequests(
    @Arg('modelName') modelName: string,
    @Arg('status', () => PromotionStatus, { nullable: true }) status: PromotionStatus | null | undefined,
    @Ctx() ctx: RequestContext,
  ) {
    return (await this.lifecycle.listPromotionRequests(ctx.em, ctx.identity, modelName, status)).map(toPromotionRequest);
  }

  @Query(() => PromotionRequest)
  async promotionRequest(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toPromotionRequest(await this.lifecycle.getPromotionRequest(ctx.em, ctx.identity, id));
  }

  @Mutation(() => ModelVersion, { description: 'Points an alias at a version, moving it from another version of the model (ml-engineer)' })
  async setModelAlias(@Arg('input') input: SetModelAliasInput, @Ctx() ctx: RequestContext) {
    return toModelVersion(await this.lifecycle.setAlias(ctx.em, ctx.identity, input));
  }

  @Mutation(() => ModelVersion, { description: 'Removes an alias from a model (ml-engineer); returns the version it named' })
  async removeModelAlias(@Arg('input') input: RemoveModelAliasInput, @Ctx() ctx: RequestContext) {
    return toModelVersion(await this.lifecycle.removeAlias(ctx.em, ctx.identity, input));
  }

  @Query(() => [StageChange], { description: 'Every stage and alias change of the model, oldest first: who, when, why' })
  async stageHistory(@Arg('modelName') modelName: string, @Ctx() ctx: RequestContext) {
    return (await this.lifecycle.history(ctx.em, ctx.identity, modelName)).map(toStageChange);
  }

  @Query(() => ModelVersion, { nullable: true, description: 'The version that held the stage at that moment (null if none did)' })
  async modelVersionAt(
    @Arg('modelName') modelName: string,
    @Arg('stage', () => ModelStage) stage: ModelStage,
    @Arg('at') at: Date,
    @Ctx() ctx: RequestContext,
  ) {
    const version = await this.lifecycle.versionAt(ctx.em, ctx.identity, modelName, stage, at);
    return version ? toModelVersion(version) : null;
  }
}
