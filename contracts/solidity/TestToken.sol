// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title TestToken
/// @notice "Test USD" (tUSD, 6 decimals): a minimal ERC-20 for local test networks.
/// @dev FOR TEST NETWORKS ONLY: `mint` is open to anyone, so the token has no value.
///      Standard ERC-20 otherwise: transfers to the zero address revert, an allowance of
///      `type(uint256).max` is treated as unlimited and not decreased by `transferFrom`,
///      errors follow ERC-6093.
contract TestToken {
    /// @notice Token name.
    string public constant name = "Test USD";
    /// @notice Token symbol.
    string public constant symbol = "tUSD";
    /// @notice Number of decimals of the token's amounts.
    uint8 public constant decimals = 6;

    /// @notice Total amount of tokens in existence.
    uint256 public totalSupply;
    /// @notice Token balance of each account.
    mapping(address account => uint256) public balanceOf;
    /// @notice Remaining amount `spender` may move from `owner` with `transferFrom`.
    mapping(address owner => mapping(address spender => uint256)) public allowance;

    /// @notice `value` tokens moved from `from` to `to` (`from == address(0)` for mints).
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice `owner` set the allowance of `spender` to `value`.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice `sender` holds `balance`, less than the `needed` amount.
    error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
    /// @notice `spender` may move `allowance`, less than the `needed` amount.
    error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    /// @notice Tokens cannot be sent to `receiver` (the zero address).
    error ERC20InvalidReceiver(address receiver);
    /// @notice `spender` (the zero address) cannot be approved.
    error ERC20InvalidSpender(address spender);

    /// @notice Creates `amount` new tokens for `to`. Open to anyone: test networks only.
    function mint(address to, uint256 amount) external {
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        totalSupply += amount;
        unchecked {
            // Cannot overflow: the sum of all balances is totalSupply, which did not overflow.
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }

    /// @notice Moves `value` tokens from the caller to `to`.
    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    /// @notice Lets `spender` move up to `value` of the caller's tokens.
    function approve(address spender, uint256 value) external returns (bool) {
        if (spender == address(0)) revert ERC20InvalidSpender(address(0));
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    /// @notice Moves `value` tokens from `from` to `to` using the caller's allowance.
    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < value) revert ERC20InsufficientAllowance(msg.sender, allowed, value);
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    function _transfer(address from, address to, uint256 value) private {
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        uint256 fromBalance = balanceOf[from];
        if (fromBalance < value) revert ERC20InsufficientBalance(from, fromBalance, value);
        unchecked {
            balanceOf[from] = fromBalance - value;
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }
}
