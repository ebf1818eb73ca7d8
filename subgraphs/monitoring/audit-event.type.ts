import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, ID, ObjectType, registerEnumType } from 'type-graphql';
import { Connection } from '../../lib/graphql/connection.js';
import type { AuditEventEntity } from './audit-event.entity.js';
import { AuditOutcome } from './monitoring.contracts.js';

registerEnumType(AuditOutcome, { name: 'AuditOutcome', description: 'DENIED: refused by authorisation before the resolver ran' });

@ObjectType({ description: 'One mutation as the gateway saw it' })
export class AuditEvent {
  @Field(() => ID)
  id!: string;

  @Field({ description: 'Subject of the caller' })
  actor!: string;

  @Field(() => [String])
  roles!: string[];

  @Field(() => String, { nullable: true })
  operationName!: string | null;

  @Field({ description: 'Root mutation field' })
  fieldName!: string;

  @Field(() => GraphQLJSONObject, { description: 'Operation variables, secrets redacted' })
  variables!: Record<string, unknown>;

  @Field(() => AuditOutcome)
  outcome!: AuditOutcome;

  @Field(() => String, { nullable: true, description: 'extensions.code of the error, when the outcome is not SUCCESS' })
  errorCode!: string | null;

  @Field(() => String, { nullable: true, description: 'W3C trace id, to find the logs of the request' })
  traceId!: string | null;

  @Field()
  at!: Date;
}

export const AuditEventConnection = Connection(AuditEvent, 'AuditEvent');

export function toAuditEvent(e: AuditEventEntity): AuditEvent {
  return Object.assign(new AuditEvent(), {
    id: e.id,
    actor: e.actor,
    roles: e.roles,
    operationName: e.operationName,
    fieldName: e.fieldName,
    variables: e.variables,
    outcome: e.outcome,
    errorCode: e.errorCode,
    traceId: e.traceId,
    at: e.createdAt,
  });
}
