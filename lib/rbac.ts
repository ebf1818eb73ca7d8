// Role-based rules every subgraph's permissions.ts is built from (graphql-shield, deny by default). Tenancy is not a
// rule here: every repository query is scoped to the caller's tenant, so another tenant's record reads as not found.
import { GraphQLError } from 'graphql';
import { allow, deny, rule, shield, type IRules } from 'graphql-shield';
import type { Role } from './auth.js';
import { forbidden } from './errors.js';
import type { RequestContext } from './graphql/subgraph.js';

/** What each capability needs: viewer < analyst < ml-engineer; approver apart; admin holds all of them. */
export const CAPABILITY_ROLES = {
  read: ['viewer', 'analyst', 'ml-engineer', 'approver', 'admin'],
  analyst: ['analyst', 'ml-engineer', 'admin'],
  'ml-engineer': ['ml-engineer', 'admin'],
  approver: ['approver', 'admin'],
  admin: ['admin'],
} as const satisfies Record<string, readonly Role[]>;
export type Capability = keyof typeof CAPABILITY_ROLES;

export function hasCapability(roles: readonly Role[], capability: Capability): boolean {
  return roles.some((r) => (CAPABILITY_ROLES[capability] as readonly Role[]).includes(r));
}

const capabilityRule = (capability: Capability) =>
  rule(`can-${capability}`, { cache: 'contextual' })((_parent, _args, ctx: RequestContext) =>
    hasCapability(ctx.identity?.roles ?? [], capability)
      ? true
      : forbidden(`This needs the ${capability === 'read' ? 'viewer (or any)' : capability} role`),
  );

export const canRead = capabilityRule('read');
export const isAnalyst = capabilityRule('analyst');
export const isMlEngineer = capabilityRule('ml-engineer');
export const isApprover = capabilityRule('approver');
export const isAdmin = capabilityRule('admin');
/** For types whose every field is as readable as the field that returned them (connections, edges, value types). */
export const sameAsParent = allow;
export { allow, deny };

/** Federation's own fields: the gateway needs them; entity lookups are tenant-scoped in __resolveReference. */
export const federationRules: IRules = {
  Query: { _service: allow, _entities: allow },
  _Service: allow,
};

export function mergeRules(...trees: IRules[]): IRules {
  const out: Record<string, unknown> = {};
  for (const tree of trees) {
    for (const [type, value] of Object.entries(tree as Record<string, unknown>)) {
      const existing = out[type];
      if (existing && typeof existing === 'object' && value && typeof value === 'object' && !('resolve' in (value as object))) {
        out[type] = { ...(existing as object), ...(value as object) };
      } else out[type] = value;
    }
  }
  return out as IRules;
}

export function permissionsMiddleware(rules: IRules) {
  return shield(mergeRules(federationRules, rules), {
    fallbackRule: deny,
    allowExternalErrors: true,
    fallbackError: (thrown) => (thrown instanceof GraphQLError ? thrown : forbidden('No rule allows this field')),
  });
}
