"""The floor: the simplest aiohttp program doing aiowget's job on small files (issue #15).

    python benchmarks/floor.py URL_LIST DEST_DIR JOBS

One session, JOBS workers, each body read whole, then `.part` written and renamed in one
thread hop. No retries, no names beyond the last path segment, no resume: what is left
between this and aiowget is aiowget's own per-file work.
"""

import asyncio
import os
import sys

import aiohttp
import uvloop


def save(path: str, data: bytes) -> None:
    with open(path + ".part", "wb") as part:
        part.write(data)
    os.replace(path + ".part", path)


async def main(urls: list[str], dest: str, jobs: int) -> None:
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for url in queue:
                async with session.get(url) as response:
                    data = await response.read()
                await asyncio.to_thread(save, os.path.join(dest, url.rsplit("/", 1)[1]), data)

        await asyncio.gather(*(worker() for _ in range(jobs)))


if __name__ == "__main__":
    with open(sys.argv[1]) as listing:
        uvloop.run(main(listing.read().split(), sys.argv[2], int(sys.argv[3])))
