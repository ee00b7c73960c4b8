//! synod-node: a Multi-Paxos key-value node.
