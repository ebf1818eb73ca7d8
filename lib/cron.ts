// Five-field cron expressions (minute hour day-of-month month day-of-week) as Vixie cron and Kubernetes CronJobs read
// them: lists, ranges, steps, month and weekday names, the @hourly family; next fire times in UTC. A bad expression
// fails with an error naming the field that does not parse, so an API can say exactly what is wrong.

export type CronFieldName = 'minute' | 'hour' | 'day-of-month' | 'month' | 'day-of-week';

interface FieldSpec {
  name: CronFieldName;
  min: number;
  max: number;
  names?: readonly string[];
}

const MONTH_NAMES = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'] as const;
const DAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] as const;

const FIELDS: readonly FieldSpec[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: MONTH_NAMES },
  // 7 is Sunday too, as in every cron; it is folded onto 0 after parsing.
  { name: 'day-of-week', min: 0, max: 7, names: DAY_NAMES },
];

const MACROS: Readonly<Record<string, string>> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

export class CronParseError extends Error {
  constructor(
    readonly expression: string,
    /** The field that does not parse; null when the expression as a whole is wrong (field count, unknown macro). */
    readonly field: CronFieldName | null,
    readonly problem: string,
  ) {
    super(field ? `cron expression ${JSON.stringify(expression)}: ${field} field ${problem}` : `cron expression ${JSON.stringify(expression)}: ${problem}`);
    this.name = 'CronParseError';
  }
}

export interface CronSchedule {
  /** The expression as given (trimmed). */
  readonly expression: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday … 6 = Saturday. */
  readonly daysOfWeek: ReadonlySet<number>;
  /** Whether day-of-month / day-of-week were restricted (not `*`): when both are, a day matches if either does. */
  readonly dayOfMonthRestricted: boolean;
  readonly dayOfWeekRestricted: boolean;
}

function parseValue(text: string, spec: FieldSpec, fail: (problem: string) => never): number {
  if (/^\d+$/.test(text)) {
    const value = Number(text);
    if (value < spec.min || value > spec.max) fail(`${JSON.stringify(text)}: ${value} is outside ${spec.min}-${spec.max}`);
    return value;
  }
  const index = spec.names?.indexOf(text.toUpperCase() as never) ?? -1;
  if (index >= 0) return spec.name === 'month' ? index + 1 : index;
  const hint = spec.names ? ` (a number ${spec.min}-${spec.max} or ${spec.names[0]}-${spec.names.at(-1)})` : ` (a number ${spec.min}-${spec.max})`;
  fail(`${JSON.stringify(text)} is not a valid value${hint}`);
}

function parseField(text: string, spec: FieldSpec, expression: string): Set<number> {
  const fail = (problem: string): never => {
    throw new CronParseError(expression, spec.name, problem);
  };
  const values = new Set<number>();
  if (text === '') fail('is empty');
  for (const part of text.split(',')) {
    if (part === '') fail(`${JSON.stringify(text)} has an empty list element`);
    const [rangeText, stepText, extra] = part.split('/');
    if (extra !== undefined) fail(`${JSON.stringify(part)} has more than one "/"`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1) fail(`${JSON.stringify(part)}: the step must be a positive whole number`);
      step = Number(stepText);
      if (step > spec.max - spec.min + 1) fail(`${JSON.stringify(part)}: step ${step} is larger than the field's range ${spec.min}-${spec.max}`);
    }
    let low: number;
    let high: number;
    if (rangeText === '*' || rangeText === '?') {
      low = spec.min;
      high = spec.name === 'day-of-week' ? 6 : spec.max;
    } else if (rangeText!.includes('-')) {
      const [a, b, more] = rangeText!.split('-');
      if (more !== undefined || !a || !b) fail(`${JSON.stringify(part)} is not a valid range`);
      low = parseValue(a!, spec, fail);
      high = parseValue(b!, spec, fail);
      if (low > high) fail(`${JSON.stringify(part)}: the range runs backwards (${low} > ${high})`);
    } else {
      low = parseValue(rangeText!, spec, fail);
      // `5/15` means from 5 to the end of the range, every 15.
      high = stepText !== undefined ? spec.max : low;
    }
    for (let v = low; v <= high; v += step) values.add(spec.name === 'day-of-week' && v === 7 ? 0 : v);
  }
  return values;
}

/** Parses an expression; throws CronParseError naming the field that is wrong. */
export function parseCron(input: string): CronSchedule {
  const expression = input.trim();
  let source = expression;
  if (source.startsWith('@')) {
    const macro = MACROS[source.toLowerCase()];
    if (!macro) throw new CronParseError(expression, null, `unknown macro ${JSON.stringify(source)} (use ${Object.keys(MACROS).join(', ')})`);
    source = macro;
  }
  const parts = source.split(/\s+/).filter((p) => p !== '');
  if (parts.length !== 5) {
    throw new CronParseError(expression, null, `has ${parts.length} field${parts.length === 1 ? '' : 's'}; expected 5 (minute hour day-of-month month day-of-week)`);
  }
  const [minutes, hours, daysOfMonth, months, daysOfWeek] = FIELDS.map((spec, i) => parseField(parts[i]!, spec, expression)) as [
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
    Set<number>,
  ];
  const restricted = (text: string) => !(text === '*' || text === '?');
  const schedule: CronSchedule = {
    expression,
    minutes,
    hours,
    daysOfMonth,
    months,
    daysOfWeek,
    dayOfMonthRestricted: restricted(parts[2]!),
    dayOfWeekRestricted: restricted(parts[4]!),
  };
  if (nextFireTime(schedule, new Date(Date.UTC(2000, 0, 1))) === null) {
    throw new CronParseError(expression, 'day-of-month', `never matches a day of the given month(s) (${parts[2]} in ${parts[3]})`);
  }
  return schedule;
}

function dayMatches(schedule: CronSchedule, date: Date): boolean {
  const dom = schedule.daysOfMonth.has(date.getUTCDate());
  const dow = schedule.daysOfWeek.has(date.getUTCDay());
  // Vixie cron: with both fields restricted, either one matching is enough.
  if (schedule.dayOfMonthRestricted && schedule.dayOfWeekRestricted) return dom || dow;
  if (schedule.dayOfMonthRestricted) return dom;
  if (schedule.dayOfWeekRestricted) return dow;
  return true;
}

/** Searching further than this many years ahead means the expression never fires (31 February, say). */
const HORIZON_YEARS = 9;

/** The first fire time strictly after `after` (UTC, whole minutes), or null when there is none within nine years. */
export function nextFireTime(schedule: CronSchedule, after: Date): Date | null {
  const t = new Date(Math.floor(after.getTime() / 60_000) * 60_000 + 60_000);
  const limit = after.getUTCFullYear() + HORIZON_YEARS;
  while (t.getUTCFullYear() <= limit) {
    if (!schedule.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(schedule, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!schedule.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!schedule.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return t;
  }
  return null;
}

/** The latest fire time in (after, until], or null when none falls in that interval. */
export function latestFireTime(schedule: CronSchedule, after: Date, until: Date): Date | null {
  let latest: Date | null = null;
  let cursor = after;
  // Walks forward; bounded so that a policy idle for years does not spin (a minute schedule over a week is 10 080 steps).
  for (let i = 0; i < 20_000; i += 1) {
    const next = nextFireTime(schedule, cursor);
    if (!next || next > until) return latest;
    latest = next;
    cursor = next;
  }
  // Too many fire times in between: the last one before `until` is found by stepping back a minute at a time.
  for (let t = Math.floor(until.getTime() / 60_000) * 60_000; t > cursor.getTime(); t -= 60_000) {
    const candidate = new Date(t);
    const prev = nextFireTime(schedule, new Date(t - 60_000));
    if (prev && prev.getTime() === candidate.getTime()) return candidate;
  }
  return latest;
}
