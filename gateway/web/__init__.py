"""Shared-history pages: patient search and one person's history, read through the FHIR API in-process."""
