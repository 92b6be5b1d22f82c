import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { applyEvent, connectionStats, initialConnectionState, toConnectionView } from '@psp/domain';
import { callEvent, CONNECTION, ORG, T0 } from '@psp/domain/testing/events';
import { ApiModule } from '../../apps/api/src/api.module';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { startService } from '../support/service';

type Schema = {
  properties?: Record<string, Schema>;
  $ref?: string;
  allOf?: Schema[];
  items?: Schema;
  required?: string[];
  nullable?: boolean;
  enum?: string[];
};
type Response = {
  headers?: Record<string, { schema: { type: string } }>;
  content?: Record<string, { schema: Schema }>;
};

/** The OpenAPI document is generated from the code and matches the contract's shapes. */
describe('the OpenAPI document', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let doc: {
    paths: Record<string, Record<string, { responses: Record<string, Response> }>>;
    components: { schemas: Record<string, Schema> };
  };

  beforeAll(async () => {
    settings = isolatedSettings('openapi');
    db = await openDatabase(settings);
    ({ app, url } = await startService(ApiModule, settings));
    const res = await fetch(`${url}/docs-json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as typeof doc;
  });

  afterAll(async () => {
    await app?.close();
    await db?.destroy();
    if (settings) await dropIsolated(settings);
  });

  it('serves Swagger UI at /docs', async () => {
    const res = await fetch(`${url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
  });

  it('has the Connection schema with exactly the fields of CONTRACT 1.3, in order, as the service renders them', () => {
    const state = initialConnectionState('o', 'c');
    applyEvent(state, {
      eventId: 'e',
      type: 'connection.configured',
      orgId: 'o',
      connectionId: 'c',
      occurredAt: 0,
      data: {
        provider: 'paystack',
        mode: 'live',
        status: 'active',
        capabilities: {},
        routing_hints: { country_preference: [], method_bias: {}, fallback_only: false },
        labels: [],
        fee_structure: { percentage: 0, fixed: 0, per_method: {}, per_currency: {} },
      },
    });
    const rendered = toConnectionView(state, 0);
    const schema = doc.components.schemas.ConnectionSchema;
    expect(Object.keys(schema.properties!)).toEqual(Object.keys(rendered));
    expect(Object.keys(doc.components.schemas.RoutingHintsSchema.properties!)).toEqual(
      Object.keys(rendered.routing_hints),
    );
    expect(Object.keys(doc.components.schemas.FeeStructureSchema.properties!)).toEqual(
      Object.keys(rendered.fee_structure),
    );
    expect(schema.required).toEqual(Object.keys(rendered));
  });

  it('has the stats schema with exactly the members of CONTRACT 1.5 and 1.5b, in order, as the service renders them', () => {
    const state = initialConnectionState(ORG, CONNECTION);
    // 40 good calls with a method and a currency: a success rate everywhere, and an outlook (unknown at minute 16).
    for (let i = 0; i < 40; i++) applyEvent(state, callEvent(`call-${i}`, T0, { method: 'card', currency: 'GHS' }));
    const rendered = connectionStats(CONNECTION, state.buckets, T0, false);
    expect(rendered.outlook).not.toBeNull();
    const schemas = doc.components.schemas;
    const keysOf = (name: string) => Object.keys(schemas[name].properties!);
    expect(keysOf('ConnectionStatsSchema')).toEqual(Object.keys(rendered));
    expect(schemas.ConnectionStatsSchema.required).toEqual(Object.keys(rendered));
    expect(keysOf('MethodStatsSchema')).toEqual(Object.keys(rendered.methods[0]));
    expect(keysOf('CurrencyStatsSchema')).toEqual(Object.keys(rendered.currencies[0]));
    expect(keysOf('MinuteStatsSchema')).toEqual(Object.keys(rendered.minutes[0]));
    expect(keysOf('SuccessRateSchema')).toEqual(Object.keys(rendered.success_rate!));
    expect(keysOf('OutlookSchema')).toEqual(Object.keys(rendered.outlook!));
    expect(schemas.OutlookSchema.properties!.to.enum).toEqual(['healthy', 'degraded', 'unhealthy', 'unknown']);
    // success_rate (there and in each entry) and outlook are null in some answers: nullable references.
    const refTo = (property: Schema) => property.$ref ?? property.allOf?.[0].$ref;
    for (const [schema, member, target] of [
      ['ConnectionStatsSchema', 'success_rate', 'SuccessRateSchema'],
      ['MethodStatsSchema', 'success_rate', 'SuccessRateSchema'],
      ['CurrencyStatsSchema', 'success_rate', 'SuccessRateSchema'],
      ['ConnectionStatsSchema', 'outlook', 'OutlookSchema'],
    ]) {
      const property = schemas[schema].properties![member];
      expect(refTo(property)).toBe(`#/components/schemas/${target}`);
      expect(property.nullable).toBe(true);
    }
  });

  it('documents the list, single and labels routes, and every error as the contract error body', () => {
    const list = doc.paths['/v1/connections'].get;
    expect(list.responses['200'].content!['application/json'].schema.$ref).toBe(
      '#/components/schemas/ConnectionListSchema',
    );
    for (const status of ['400', '401', '403']) {
      expect(list.responses[status].content!['application/json'].schema.$ref).toBe(
        '#/components/schemas/ErrorBodySchema',
      );
    }
    expect(doc.paths['/v1/connections/{id}'].get.responses['404'].content!['application/json'].schema.$ref).toBe(
      '#/components/schemas/ErrorBodySchema',
    );
    expect(doc.paths['/v1/connections/labels'].get.responses['200']).toBeDefined();
    const error = doc.components.schemas.ErrorBodySchema;
    expect(Object.keys(error.properties!)).toEqual(['error', 'code', 'message', 'details']);
    expect(error.required).toEqual(['error', 'code', 'message']);
  });

  it('documents the rate limits (CONTRACT 1.1a) on every /v1 route: the 429 with Retry-After, the three headers on every response but the 401', () => {
    const routes = Object.keys(doc.paths).filter((p) => p.startsWith('/v1/'));
    expect(routes).toEqual(
      expect.arrayContaining(['/v1/connections', '/v1/connections/{id}', '/v1/connections/labels']),
    );
    const rateLimitHeaders = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'];
    for (const route of routes) {
      const responses = doc.paths[route].get.responses;
      const tooMany = responses['429'];
      expect(tooMany.content!['application/json'].schema.$ref).toBe('#/components/schemas/ErrorBodySchema');
      expect(Object.keys(tooMany.headers!).sort()).toEqual(['Retry-After', ...rateLimitHeaders].sort());
      for (const [status, response] of Object.entries(responses)) {
        const names = Object.keys(response.headers ?? {});
        if (status === '401') expect(names).not.toContain('X-RateLimit-Limit');
        else expect(names).toEqual(expect.arrayContaining(rateLimitHeaders));
        for (const name of names.filter((n) => rateLimitHeaders.includes(n)))
          expect(response.headers![name].schema.type).toBe('integer');
      }
    }
  });
});
