import { Global, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { loadSettings, Settings } from './settings';

/** Injection token of the validated `Settings`. */
export const SETTINGS = Symbol('SETTINGS');

/**
 * @nestjs/config reads the environment (and a .env file when present); `loadSettings` validates it,
 * so a bad setting stops the process before anything connects.
 */
@Global()
@Module({
  imports: [
    ConfigModule.forRoot({
      isGlobal: true,
      ignoreEnvFile: false,
      validate: (env) => ({ ...env, settings: loadSettings(env as Record<string, string>) }),
    }),
  ],
  providers: [
    {
      provide: SETTINGS,
      inject: [ConfigService],
      useFactory: (config: ConfigService): Settings => config.get<Settings>('settings') as Settings,
    },
  ],
  exports: [SETTINGS],
})
export class SettingsModule {}
