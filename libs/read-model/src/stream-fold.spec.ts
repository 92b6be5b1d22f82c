import { foldShare } from './stream-fold';

/** The shards folded at once share the process's bounds: memory does not grow with --parallel. */
describe('foldShare', () => {
  it('gives one fold the whole page and write bounds', () => {
    expect(foldShare(50000, 1)).toEqual({ pageEvents: 10000, writeConnections: 2000 });
    expect(foldShare(500, 1)).toEqual({ pageEvents: 500, writeConnections: 2000 });
    expect(foldShare(500, 4)).toEqual({ pageEvents: 500, writeConnections: 500 });
  });

  it('splits them between the folds running at once, down to a floor', () => {
    expect(foldShare(50000, 2)).toEqual({ pageEvents: 5000, writeConnections: 1000 });
    expect(foldShare(50000, 4)).toEqual({ pageEvents: 2500, writeConnections: 500 });
    expect(foldShare(50000, 16)).toEqual({ pageEvents: 1000, writeConnections: 250 });
  });
});
