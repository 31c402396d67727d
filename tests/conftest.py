"""Hypothesis settings for every test that uses it: no deadline.

Hypothesis fails an example that takes longer than 200 ms by default: a timing
assertion, which the project's tests do not make. On a shared two-core machine
under load (CI, xdist workers beside other work) a parse of a generated input
took 289 ms once and failed the suite. How many examples run is unchanged;
tests that set their own ``deadline`` keep it.
"""

from hypothesis import settings

settings.register_profile("mltrail", deadline=None)
settings.load_profile("mltrail")
