"""The PostgreSQL store's pool hands out the connection given back last, so one-at-a-time
commits go through one warm connection; the others stay idle."""

from __future__ import annotations

from aetheris.store.postgres_pooling import Pooling, open_pool


async def test_the_connection_given_back_last_is_handed_out_first(pg_url: str) -> None:
    pool = await open_pool(pg_url, Pooling(3, 3, "none"), 10.0)
    try:
        first, second, third = [await pool.getconn() for _ in range(3)]
        for conn in (first, second, third):
            await pool.putconn(conn)
        # psycopg's own pool would hand out `first` (idle longest) here.
        taken = [await pool.getconn() for _ in range(3)]
        assert taken == [third, second, first]
        for conn in taken:
            await pool.putconn(conn)
        for _ in range(5):  # one at a time: always the same connection
            conn = await pool.getconn()
            assert conn is first
            await pool.putconn(conn)
    finally:
        await pool.close()
