import { describe, expect, it } from 'vitest';
import { displayName, isPid, pidLiteral, qualifiedName, quoteIdent, quoteLiteral } from '../../src/actions/sql.js';

describe('quoteIdent', () => {
  it('always quotes, so case, spaces and keywords survive', () => {
    expect(quoteIdent('orders')).toBe('"orders"');
    expect(quoteIdent('Orders')).toBe('"Orders"');
    expect(quoteIdent('order items')).toBe('"order items"');
    expect(quoteIdent('select')).toBe('"select"');
    expect(quoteIdent('größe_表')).toBe('"größe_表"');
  });

  it('doubles embedded double quotes, so a name cannot end the identifier early', () => {
    expect(quoteIdent('a"b')).toBe('"a""b"');
    expect(quoteIdent('"')).toBe('""""');
    expect(quoteIdent('x"; drop table t; --')).toBe('"x""; drop table t; --"');
  });

  it('refuses names PostgreSQL cannot have', () => {
    expect(() => quoteIdent('')).toThrow(/empty/);
    expect(() => quoteIdent('a\0b')).toThrow(/NUL/);
  });

  it('quotes both parts of a qualified name', () => {
    expect(qualifiedName('Sales "EU"', 'order; drop table x')).toBe('"Sales ""EU"""."order; drop table x"');
    expect(displayName('public', 'orders')).toBe('public.orders');
  });
});

describe('quoteLiteral', () => {
  it("doubles single quotes and uses E'' when there is a backslash, as quote_literal() does", () => {
    expect(quoteLiteral('public')).toBe("'public'");
    expect(quoteLiteral("O'Reilly")).toBe("'O''Reilly'");
    expect(quoteLiteral('a\\b')).toBe("E'a\\\\b'");
    expect(quoteLiteral("\\'")).toBe("E'\\\\'''");
    expect(() => quoteLiteral('\0')).toThrow(/NUL/);
  });
});

describe('pids', () => {
  it('accepts positive 32-bit integers only', () => {
    expect(isPid(4242)).toBe(true);
    expect(isPid(2_147_483_647)).toBe(true);
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity, 2_147_483_648, '42']) expect(isPid(bad)).toBe(false);
  });

  it('writes a pid into SQL only when it is one', () => {
    expect(pidLiteral(4242)).toBe('4242');
    expect(() => pidLiteral(1.5)).toThrow('not a process id: 1.5');
    expect(() => pidLiteral(Number('1; select 1'))).toThrow('not a process id: NaN');
  });
});
