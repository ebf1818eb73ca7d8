import { describe, expect, it } from 'vitest';
import { CronParseError, latestFireTime, nextFireTime, parseCron } from './cron.js';

const utc = (iso: string) => new Date(iso);
const next = (expression: string, after: string) => nextFireTime(parseCron(expression), utc(after))?.toISOString() ?? null;

function parseError(expression: string): CronParseError {
  try {
    parseCron(expression);
  } catch (error) {
    if (error instanceof CronParseError) return error;
    throw error;
  }
  throw new Error(`${expression} parsed`);
}

describe('parseCron', () => {
  it('reads lists, ranges, steps and names', () => {
    const s = parseCron('0,30 9-17/2 1,15 jan-mar,DEC mon-fri');
    expect([...s.minutes]).toEqual([0, 30]);
    expect([...s.hours]).toEqual([9, 11, 13, 15, 17]);
    expect([...s.daysOfMonth]).toEqual([1, 15]);
    expect([...s.months]).toEqual([1, 2, 3, 12]);
    expect([...s.daysOfWeek]).toEqual([1, 2, 3, 4, 5]);
  });

  it('takes */n, a/n and 7 as Sunday', () => {
    const s = parseCron('*/15 5/6 * * 7');
    expect([...s.minutes]).toEqual([0, 15, 30, 45]);
    expect([...s.hours]).toEqual([5, 11, 17, 23]);
    expect([...s.daysOfWeek]).toEqual([0]);
  });

  it('expands the @ macros', () => {
    expect(next('@daily', '2026-03-04T10:00:00Z')).toBe('2026-03-05T00:00:00.000Z');
    expect(next('@hourly', '2026-03-04T10:00:00Z')).toBe('2026-03-04T11:00:00.000Z');
    expect(next('@weekly', '2026-03-04T10:00:00Z')).toBe('2026-03-08T00:00:00.000Z');
  });

  it.each([
    ['61 * * * *', 'minute', /"61": 61 is outside 0-59/],
    ['* 24 * * *', 'hour', /outside 0-23/],
    ['* * 0 * *', 'day-of-month', /outside 1-31/],
    ['* * * foo *', 'month', /"foo" is not a valid value \(a number 1-12 or JAN-DEC\)/],
    ['* * * * 8', 'day-of-week', /outside 0-7/],
    ['*/0 * * * *', 'minute', /step must be a positive whole number/],
    ['* 5-2 * * *', 'hour', /runs backwards/],
    ['1,,2 * * * *', 'minute', /empty list element/],
    ['* * * * mon-', 'day-of-week', /not a valid range/],
    ['0 0 30 feb *', 'day-of-month', /never matches/],
  ])('refuses %j naming the %s field', (expression, field, message) => {
    const error = parseError(expression);
    expect(error.field).toBe(field);
    expect(error.message).toContain(field);
    expect(error.message).toContain(JSON.stringify(expression));
    expect(error.message).toMatch(message);
  });

  it('refuses the wrong number of fields and unknown macros without naming a field', () => {
    expect(parseError('* * * *').message).toMatch(/has 4 fields; expected 5/);
    expect(parseError('* * * * * *').field).toBeNull();
    expect(parseError('@sometimes').message).toMatch(/unknown macro/);
  });
});

describe('nextFireTime', () => {
  it('finds the next minute, hour, day and month in UTC', () => {
    expect(next('*/5 * * * *', '2026-01-01T10:07:30Z')).toBe('2026-01-01T10:10:00.000Z');
    expect(next('0 3 * * *', '2026-01-01T03:00:00Z')).toBe('2026-01-02T03:00:00.000Z');
    expect(next('30 23 31 12 *', '2026-12-31T23:30:00Z')).toBe('2027-12-31T23:30:00.000Z');
    expect(next('0 0 1 * *', '2026-01-31T12:00:00Z')).toBe('2026-02-01T00:00:00.000Z');
  });

  it('skips months without the day and finds 29 February', () => {
    expect(next('0 12 31 * *', '2026-04-01T00:00:00Z')).toBe('2026-05-31T12:00:00.000Z');
    expect(next('0 0 29 2 *', '2026-01-01T00:00:00Z')).toBe('2028-02-29T00:00:00.000Z');
  });

  it('matches either day field when both are restricted, as cron does', () => {
    // 2026-03-01 is a Sunday; the 13th is a Friday.
    expect(next('0 0 13 * 1', '2026-03-01T00:00:00Z')).toBe('2026-03-02T00:00:00.000Z');
    expect(next('0 0 13 * 1', '2026-03-10T00:00:00Z')).toBe('2026-03-13T00:00:00.000Z');
    // Only the weekday restricted: the day of month does not matter.
    expect(next('0 0 * * fri', '2026-03-01T00:00:00Z')).toBe('2026-03-06T00:00:00.000Z');
  });
});

describe('latestFireTime', () => {
  it('gives the last fire time in an interval, or null', () => {
    const s = parseCron('0 * * * *');
    expect(latestFireTime(s, utc('2026-01-01T00:30:00Z'), utc('2026-01-01T05:10:00Z'))?.toISOString()).toBe('2026-01-01T05:00:00.000Z');
    expect(latestFireTime(s, utc('2026-01-01T00:30:00Z'), utc('2026-01-01T00:59:00Z'))).toBeNull();
  });

  it('copes with a dense schedule over a long gap', () => {
    const s = parseCron('* * * * *');
    expect(latestFireTime(s, utc('2026-01-01T00:00:00Z'), utc('2026-03-01T12:34:56Z'))?.toISOString()).toBe('2026-03-01T12:34:00.000Z');
  });
});
