-- es 0.4.0 -> 0.5.0: robustness (issue 11) and what follows it
--
-- Each section below names what it changes and why.

\echo Use "ALTER EXTENSION es UPDATE TO '0.5.0'" to load this file. \quit
