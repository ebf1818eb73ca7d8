// Triggers retraining policies from outside the monitoring subgraph, over RabbitMQ (AMQP_URL):
//   node dist/scripts/retraining-trigger.js --due
//       runs one scheduler pass: every policy whose cron schedule has come due gets its SCHEDULE decision. The
//       Kubernetes CronJob (deploy/k8s/retraining.yaml) runs this when RETRAINING_SCHEDULER_ENABLED=false; running it
//       more often than needed, or beside the in-process scheduler, starts nothing twice (one decision per fire time).
//   node dist/scripts/retraining-trigger.js --tenant acme --model snunet --reason "new labels" [--requested-by ops]
//       a MANUAL trigger of one policy, under its cooldown and daily maximum like triggerRetraining.
// The command waits in the durable queue RETRAINING_TRIGGERS_QUEUE until a monitoring replica takes it; the decision
// shows in `retrainingDecisions(modelName)`.
import { parseArgs } from 'node:util';
import { createBroker, createEnvelope } from '../lib/broker/broker.js';
import { exitOnConfigError } from '../lib/main.js';
import { loadRuntimeConfig } from '../lib/runtime.js';
import { loadMonitoringConfig } from '../subgraphs/monitoring/config.js';
import { RETRAINING_COMMAND_TYPES, triggerCommandSchema, type SchedulePassCommand, type TriggerCommand } from '../subgraphs/monitoring/retraining.contracts.js';

const usage = `usage: retraining-trigger --due
       retraining-trigger --tenant <tenant> --model <model name> --reason <text> [--requested-by <who>]`;

function fail(message: string): never {
  process.stderr.write(`${message}\n${usage}\n`);
  process.exit(2);
}

try {
  const { values } = parseArgs({
    options: {
      due: { type: 'boolean', default: false },
      tenant: { type: 'string' },
      model: { type: 'string' },
      reason: { type: 'string' },
      'requested-by': { type: 'string', default: 'retraining-trigger-cli' },
    },
  });
  const runtime = loadRuntimeConfig(process.env);
  const monitoring = loadMonitoringConfig(process.env);
  if (!runtime.AMQP_URL) fail('AMQP_URL is not set: the trigger reaches the monitoring subgraph over RabbitMQ (the embedded broker lives inside `npm start`, whose in-process scheduler already runs the schedules)');

  let send: () => Promise<string>;
  if (values.due) {
    if (values.tenant || values.model || values.reason) fail('--due takes no --tenant, --model or --reason');
    const command: SchedulePassCommand = { at: new Date().toISOString() };
    send = async () => {
      await broker.send(monitoring.RETRAINING_TRIGGERS_QUEUE, createEnvelope(RETRAINING_COMMAND_TYPES.schedulePass, command, { tenant: '*' }));
      return 'scheduler pass requested';
    };
  } else {
    const parsed = triggerCommandSchema.safeParse({ tenant: values.tenant, modelName: values.model, reason: values.reason, requestedBy: values['requested-by'] });
    if (!parsed.success) fail(`bad arguments: ${parsed.error.issues.map((i) => `${i.path.join('.') === 'modelName' ? '--model' : `--${i.path.join('.')}`}: ${i.message}`).join('; ')}`);
    const command: TriggerCommand = parsed.data;
    send = async () => {
      await broker.send(monitoring.RETRAINING_TRIGGERS_QUEUE, createEnvelope(RETRAINING_COMMAND_TYPES.trigger, command, { tenant: command.tenant }));
      return `retraining of ${command.modelName} (tenant ${command.tenant}) requested; see retrainingDecisions(modelName: "${command.modelName}")`;
    };
  }

  const broker = await createBroker({ url: runtime.AMQP_URL, service: 'retraining-trigger' });
  try {
    // send fails when the queue does not exist, i.e. no monitoring subgraph has ever started against this broker.
    process.stdout.write(`${await send()}\n`);
  } catch (error) {
    process.stderr.write(`could not send to ${monitoring.RETRAINING_TRIGGERS_QUEUE}: ${(error as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    await broker.close();
  }
} catch (error) {
  exitOnConfigError(error);
}
