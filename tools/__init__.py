"""Repository tools: the documents' figures renderer and the one table of goals.

Imported by the benchmarks and the renderer, never by the product or the lessons.
"""
