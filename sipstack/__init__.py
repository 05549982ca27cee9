"""SIP stack: messages, transactions, dialogs, auth, SDP, transports, registrar."""
