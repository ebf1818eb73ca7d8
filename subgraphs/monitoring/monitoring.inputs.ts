import { Field, InputType } from 'type-graphql';
import { AuditOutcome } from './monitoring.contracts.js';

@InputType({ description: 'Every field given must match; from is inclusive, to exclusive' })
export class AuditEventFilter {
  @Field(() => String, { nullable: true, description: 'Subject of the caller' })
  actor?: string | null;

  @Field(() => String, { nullable: true, description: 'Root mutation field' })
  fieldName?: string | null;

  @Field(() => AuditOutcome, { nullable: true })
  outcome?: AuditOutcome | null;

  @Field(() => Date, { nullable: true })
  from?: Date | null;

  @Field(() => Date, { nullable: true })
  to?: Date | null;
}
