"""Command handling: eventsourcing Applications, ports for the outside world."""
