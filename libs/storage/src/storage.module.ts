import { Global, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { SETTINGS, Settings } from '@psp/config';
import { createDataSource, migrate } from './data-source';

/** Closes the pool when the app stops. */
@Injectable()
class DataSourceCloser implements OnApplicationShutdown {
  constructor(@Inject(DataSource) private readonly dataSource: DataSource) {}
  async onApplicationShutdown(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}

/** PostgreSQL for every app: creates the database when missing and runs migrations before serving. */
@Global()
@Module({
  providers: [
    {
      provide: DataSource,
      inject: [SETTINGS],
      useFactory: async (settings: Settings): Promise<DataSource> => {
        const ran = await migrate(settings.databaseUrl);
        if (ran.length > 0) new Logger('Storage').log(`ran migrations: ${ran.join(', ')}`);
        const ds = createDataSource(settings.databaseUrl);
        return ds.initialize();
      },
    },
    DataSourceCloser,
  ],
  exports: [DataSource],
})
export class StorageModule {}
