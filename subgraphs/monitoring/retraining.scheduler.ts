// The in-process scheduler of retraining policies (embedded mode, single-replica deployments): a scheduler pass every
// interval. Passes are idempotent per policy and fire time (a unique key on the decision), so a second replica or the
// Kubernetes CronJob running a pass at the same time cannot start a second run.
import type { EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import type { RetrainingService } from './retraining.service.js';

export class RetrainingScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;

  constructor(
    private readonly service: RetrainingService,
    private readonly fork: () => EntityManager,
    private readonly options: { intervalMs: number; log: Logger },
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
    this.tick();
  }

  /** Runs a pass unless one is running already. */
  tick(): void {
    if (this.running) return;
    this.running = this.service
      .schedulePass(this.fork)
      .then((decisions) => {
        if (decisions.length > 0) this.options.log.info({ decisions: decisions.map((d) => ({ id: d.id, modelName: d.modelName, outcome: d.outcome })) }, 'scheduled retraining decisions');
      })
      .catch((error: unknown) => this.options.log.warn({ err: error }, 'retraining scheduler pass failed; the next one tries again'))
      .finally(() => {
        this.running = null;
      });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
