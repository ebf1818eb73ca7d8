// `npm run token -- --role analyst --tenant acme [--subject alice] [--ttl 3600]`: prints a development token
// signed with the embedded key, alone on the last line so scripts can read it.
import { parseArgs } from 'node:util';
import { issueDevToken, ROLES, type Role } from '../lib/auth.js';
import { exitOnConfigError } from '../lib/main.js';
import { loadRuntimeConfig } from '../lib/runtime.js';

try {
  const { values } = parseArgs({
    options: {
      role: { type: 'string', multiple: true, default: ['viewer'] },
      tenant: { type: 'string', default: 'dev' },
      subject: { type: 'string' },
      ttl: { type: 'string', default: '43200' },
    },
  });
  const roles = values.role.flatMap((r) => r.split(','));
  const unknown = roles.filter((r) => !ROLES.includes(r as Role));
  if (unknown.length > 0) {
    process.stderr.write(`Unknown role(s): ${unknown.join(', ')}. Roles: ${ROLES.join(', ')}\n`);
    process.exit(2);
  }
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl < 1) {
    process.stderr.write('--ttl must be a positive number of seconds\n');
    process.exit(2);
  }
  const config = loadRuntimeConfig(process.env);
  const token = await issueDevToken(config.STATE_DIR, {
    subject: values.subject ?? `dev-${roles[0]}`,
    tenant: values.tenant,
    roles: roles as Role[],
    ttlSeconds: ttl,
  });
  process.stdout.write(`${token}\n`);
} catch (error) {
  exitOnConfigError(error);
}
