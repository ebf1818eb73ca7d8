// Deny by default is only safe when every field was thought about: each object type of each subgraph must have an
// explicit rule, for the whole type or for each of its fields, and every root field its own.
import { isObjectType } from 'graphql';
import { describe, expect, it } from 'vitest';
import { mergeRules, federationRules } from '../../lib/rbac.js';
import { subgraphSetups, SUBGRAPH_NAMES } from '../../subgraphs/index.js';

const ROOTS = new Set(['Query', 'Mutation', 'Subscription']);

describe('authorization coverage', () => {
  for (const name of SUBGRAPH_NAMES) {
    it(`gives every type and field of the ${name} subgraph an explicit rule`, async () => {
      const setup = subgraphSetups({})[name];
      const schema = await setup.definition.schema({} as never);
      const rules = mergeRules(federationRules, setup.definition.permissions) as Record<string, unknown>;
      const missing: string[] = [];
      for (const type of Object.values(schema.getTypeMap())) {
        if (!isObjectType(type) || type.name.startsWith('__')) continue;
        const rule = rules[type.name];
        const fieldRules = rule && typeof rule === 'object' && !('resolve' in rule) ? (rule as Record<string, unknown>) : null;
        if (!rule) {
          missing.push(`${type.name} (no rule for the type)`);
          continue;
        }
        if (ROOTS.has(type.name) && !fieldRules) missing.push(`${type.name} must name each field`);
        if (fieldRules) {
          for (const field of Object.keys(type.getFields())) {
            if (!fieldRules[field] && !fieldRules['*']) missing.push(`${type.name}.${field}`);
          }
        }
      }
      expect(missing, `fields without a rule in subgraphs/${name}/permissions.ts`).toEqual([]);
    });
  }
});
