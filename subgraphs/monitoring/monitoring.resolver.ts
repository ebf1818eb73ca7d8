import { Arg, Args, ArgsType, Ctx, Field, ID, Int, Mutation, Query, Resolver } from 'type-graphql';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { AuditService } from './audit.service.js';
import { AuditEvent, AuditEventConnection, toAuditEvent } from './audit-event.type.js';
import { DriftService } from './drift.service.js';
import { DriftAlert, DriftAlertConnection, DriftReport, DriftReportConnection, toDriftAlert, toDriftReport } from './drift.type.js';
import { AuditEventFilter } from './monitoring.inputs.js';
import { DriftAlertStatus } from './monitoring.contracts.js';

@ArgsType()
export class PageArgs {
  @Field(() => Int, { nullable: true, description: 'Page size, 1–100 (default 20)' })
  first?: number | null;

  @Field(() => String, { nullable: true, description: 'Cursor of the last item of the previous page' })
  after?: string | null;
}

const actor = (ctx: RequestContext) => ({ tenant: ctx.identity.tenant, subject: ctx.identity.subject });

@Resolver(() => AuditEvent)
export class AuditEventResolver {
  constructor(private readonly service: AuditService) {}

  @Query(() => AuditEventConnection, { nullable: true, description: 'Mutations made in your tenant, newest first (admins only; null with a FORBIDDEN error otherwise)' })
  async auditEvents(
    @Arg('filter', () => AuditEventFilter, { nullable: true }) filter: AuditEventFilter | null,
    @Args() page: PageArgs,
    @Ctx() ctx: RequestContext,
  ) {
    return this.service.list(ctx.em, actor(ctx), filter ?? {}, page, toAuditEvent);
  }
}

@Resolver(() => DriftReport)
export class DriftReportResolver {
  constructor(private readonly service: DriftService) {}

  @Query(() => DriftReportConnection, { description: "A model's drift reports whose window overlaps [from, to), newest first" })
  async driftReports(
    @Arg('modelName') modelName: string,
    @Arg('from', () => Date, { nullable: true }) from: Date | null,
    @Arg('to', () => Date, { nullable: true }) to: Date | null,
    @Args() page: PageArgs,
    @Ctx() ctx: RequestContext,
  ) {
    return this.service.listReports(ctx.em, actor(ctx), { modelName, from, to }, page, toDriftReport);
  }
}

@Resolver(() => DriftAlert)
export class DriftAlertResolver {
  constructor(private readonly service: DriftService) {}

  @Query(() => DriftAlert)
  async driftAlert(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toDriftAlert(await this.service.getAlert(ctx.em, actor(ctx), id));
  }

  @Mutation(() => DriftAlert, {
    description: 'Marks a drift alert as seen (analyst or above): records who and when; acknowledging it again changes nothing',
  })
  async acknowledgeDriftAlert(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toDriftAlert(await this.service.acknowledgeAlert(ctx.em, actor(ctx), id));
  }

  @Query(() => DriftAlertConnection, { description: 'Drift alerts of your tenant, newest first' })
  async driftAlerts(
    @Arg('modelName', () => String, { nullable: true }) modelName: string | null,
    @Arg('status', () => DriftAlertStatus, { nullable: true }) status: DriftAlertStatus | null,
    @Args() page: PageArgs,
    @Ctx() ctx: RequestContext,
  ) {
    return this.service.listAlerts(ctx.em, actor(ctx), { modelName, status }, page, toDriftAlert);
  }
}
