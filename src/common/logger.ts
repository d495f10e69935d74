import { type Logger as PinoLogger, pino } from 'pino';

export type Logger = PinoLogger;

/** Structured JSON logs on stdout; components log through child loggers: logger.child({ component }). */
export function createLogger(level: string = process.env.FLOWSENTRY_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service: 'flowsentry' }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that writes nothing (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
