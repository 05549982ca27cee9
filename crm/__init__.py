"""The business half of the contact center: members, points, tickets, work orders, appointments,
catalogue, orders, return visits and surveys, knowledge base, messaging, reports, users/roles, audit.

`crm` knows nothing of SIP. The composition root opens the database, applies
`crm.schema.MIGRATIONS`, wraps the connection in `crm.db.Database` and builds the services
(`crm.service.Crm`). Every service method takes the acting user (`crm.access.Actor`) first and
checks its permission and data scope before touching data.
"""
