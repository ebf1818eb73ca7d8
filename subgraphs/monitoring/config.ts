import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';
import { DEFAULT_AUDIT_QUEUE } from '../../lib/security/audit.js';

export const monitoringEnv = z.object({
  MONITORING_PORT: portEnv(4004),
  MONITORING_DATABASE_URL: z.string().optional(),
  /** Where the gateway sends audit records; the same value on both sides. */
  AUDIT_QUEUE: z.string().regex(/^[A-Za-z0-9_.:-]{1,200}$/).default(DEFAULT_AUDIT_QUEUE),
});
export type MonitoringConfig = Readonly<z.infer<typeof monitoringEnv>>;

export const loadMonitoringConfig = (env: Env): MonitoringConfig => parseConfig(monitoringEnv, env);
