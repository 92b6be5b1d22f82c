import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DataSource } from 'typeorm';
import { Settings } from '@psp/config';
import { applyEvent, initialConnectionState, toConnectionView } from '@psp/domain';
import { ApiModule } from '../../apps/api/src/api.module';
import { dropIsolated, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { startService } from '../support/service';

type Schema = { properties?: Record<string, Schema>; $ref?: string; items?: Schema; required?: string[] };

/** The OpenAPI document is generated from the code and matches the contract's shapes. */
describe('the OpenAPI document', () => {
  let settings: Settings;
  let db: DataSource;
  let app: NestFastifyApplication;
  let url: string;
  let doc: {
    paths: Record<
      string,
      Record<string, { responses: Record<string, { content?: Record<string, { schema: Schema }> }> }>
    >;
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
});
