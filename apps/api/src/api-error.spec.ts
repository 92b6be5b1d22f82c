import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NotFoundException, PayloadTooLargeException } from '@nestjs/common';
import { parseListQuery } from '@psp/domain';
import { API_ERRORS, ApiError, ApiErrorCode, codesOf, toApiError } from './api-error';

describe('the error table (API_ERRORS)', () => {
  it('gives each code its status and the contract body', () => {
    expect(ApiError.of('invalid_api_key')).toMatchObject({
      status: 401,
      body: { error: 'unauthorized', code: 'invalid_api_key', message: 'The API key is not valid.' },
    });
    expect(ApiError.of('missing_org_id')).toMatchObject({
      status: 400,
      body: {
        error: 'validation_error',
        code: 'missing_org_id',
        message: 'The X-Org-Id header is required.',
        details: { field: 'X-Org-Id' },
      },
    });
    expect(ApiError.of('rate_limit_exceeded').status).toBe(429);
    expect(ApiError.of('connection_not_found').body).toEqual({
      error: 'not_found',
      code: 'connection_not_found',
      message: 'No connection with this id in your org.',
    });
  });

  it('answers the domain’s list-query codes with 400 validation_error naming the parameter', () => {
    const refused = (pairs: [string, string][]) => {
      const parsed = parseListQuery(pairs);
      if (parsed.ok) throw new Error('expected a refusal');
      return ApiError.ofListQuery(parsed.rejection);
    };
    expect(
      refused([
        ['offset', '1'],
        ['offset', '2'],
      ]),
    ).toMatchObject({
      status: 400,
      body: {
        error: 'validation_error',
        code: 'duplicate_parameter',
        message: 'offset must be given at most once',
        details: { field: 'offset' },
      },
    });
    expect(refused([['limit', '201']]).body).toEqual({
      error: 'validation_error',
      code: 'invalid_limit',
      message: 'limit must be an integer between 1 and 200',
      details: { field: 'limit' },
    });
  });

  it('keeps the HTTP layer’s 4xx status for bad_request; anything else unexpected is internal_error', () => {
    expect(toApiError(new PayloadTooLargeException())).toMatchObject({ status: 413, body: { code: 'bad_request' } });
    expect(toApiError({ statusCode: 415 })).toMatchObject({ status: 415, body: { code: 'bad_request' } });
    expect(toApiError(new NotFoundException()).body.code).toBe('route_not_found');
    expect(toApiError(new Error('boom'))).toMatchObject({ status: 500, body: { code: 'internal_error' } });
  });

  it('writes a whole HTTP/1.1 response for errors answered on the socket', () => {
    const body = '{"error":"bad_request","code":"request_timeout","message":"The request took too long to arrive."}';
    expect(ApiError.of('request_timeout').rawResponse()).toBe(
      `HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
  });

  it('lists the codes of a status in the table’s order', () => {
    expect(codesOf(401)).toEqual(['missing_api_key', 'invalid_api_key']);
    expect(codesOf(403)).toEqual(['org_mismatch', 'insufficient_scopes']);
  });

  it('is the table docs/api.md shows under "Every error", row for row', () => {
    const doc = readFileSync(join(__dirname, '../../../docs/api.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### Every error'), doc.indexOf('## 1.1 Authentication'));
    const rows = section
      .split('\n')
      .filter((l) => /^\| \d{3} \|/.test(l))
      .map((l) => l.split('|').map((c) => c.trim()));
    const documented = rows.map(([, status, error, code, message]) => ({
      status: Number(status),
      error: error.replace(/`/g, ''),
      code: code.replace(/`/g, ''),
      message: /^`([^`]*)`/.exec(message)?.[1],
    }));
    const table = (Object.keys(API_ERRORS) as ApiErrorCode[]).map((code) => {
      const spec = API_ERRORS[code];
      const message = typeof spec.message === 'function' ? spec.message('<name>') : spec.message;
      return { status: spec.status, error: spec.error, code, message };
    });
    expect(documented).toEqual(table);
  });
});
