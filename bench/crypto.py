"""Micro-benchmarks of what every recipient pays: sealing, blind indexing, segment counting."""

from __future__ import annotations

import os
import time

from bench.harness import heading, line
from rapidresponse.crypto import BlindIndex, FieldCipher
from rapidresponse.sms import segment

ROUNDS = 20_000


def run(rounds: int = ROUNDS) -> None:
    heading("crypto: per phone number and per text")
    cipher, index = FieldCipher([os.urandom(32)]), BlindIndex(os.urandom(32))
    started = time.perf_counter()
    for n in range(rounds):
        number = f"+1503555{n % 10_000:04d}"
        cipher.decrypt(cipher.encrypt(number, "p"), "p")
        index.digest(number, "phone")
    per = (time.perf_counter() - started) / rounds * 1e6
    line("seal + open + index one number", f"{per:.1f} µs")
    started = time.perf_counter()
    for _ in range(rounds):
        segment("ALERTA Cully: agentes confirmados cerca de NE 42nd. Responda DERECHOS.")
    per = (time.perf_counter() - started) / rounds * 1e6
    line("segment count of one alert", f"{per:.1f} µs")
